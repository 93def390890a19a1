"""The results document: its statistics and its atomic writing. Twin of cpp/results.cpp.

The schema is schema/results.schema.json; suite/schema.py validates documents against it.
"""

import json
import math
import os
from pathlib import Path

SCHEMA_VERSION = 3


class ResultsError(Exception):
    """A results document cannot be written (a non-finite number)."""


def percentile(sorted_values, q):
    """Linear interpolation between the closest ranks (numpy's default), written out for the C++ twin."""
    n = len(sorted_values)
    pos = q / 100 * (n - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize_ms(samples_ms):
    s = sorted(samples_ms)
    return {"median_ms": percentile(s, 50), "p90_ms": percentile(s, 90), "p99_ms": percentile(s, 99),
            "mean_ms": sum(s) / len(s)}


def empty_sample_entry(samples_us):
    """The results' record of the clock's own cost: every empty sample (µs) and their median."""
    return {"samples_us": samples_us, "median_us": percentile(sorted(samples_us), 50)}


# The temporary file being written, if any: a signal handler removes it before the process exits.
pending_tmp = None


def write_results_atomic(doc, path):
    """Write to a temporary file beside `path`, then rename: readers never see half a document.

    Raises ResultsError for a non-finite number (JSON has none; the twin refuses it too) and OSError when
    the file cannot be written; neither leaves a file behind.
    """
    global pending_tmp
    try:
        text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    except ValueError:
        raise ResultsError("a non-finite number in the results") from None
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    pending_tmp = tmp
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        pending_tmp = None
