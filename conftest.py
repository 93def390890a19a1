"""The suite's pytest plugin is the package suite/plugin/ (one module per concern: options, presets and RunConfig,
fixtures and the trainer-run cache, the benchmark's runs, the A/B gate's baseline side, pytest-benchmark and gate
hooks); pytester runs the suite's own sessions in-process. docs/suite.md documents the options, markers and tiers."""

from suite.plugin import PLUGINS

pytest_plugins = ["pytester", *PLUGINS]
