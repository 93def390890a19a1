import sys

from suite.report.cli import main

sys.exit(main())
