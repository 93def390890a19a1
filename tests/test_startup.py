"""Schema version 4 in both trainers: `startup_seconds` (from the OS's start of the process to the model being
ready: just before the first training step, or the first inference with --eval-only), `peak_rss_bytes` and
`config.repeat` (--repeat, recorded, changes nothing); version 6: the dataset's SHA-256 after the start-up, timed
apart (`dataset_hash_seconds`).

The start-up time is checked against what the test itself sees, so the checks hold on any machine: the trainer
starts after the test's clock starts and its training window follows the start-up, so both fit in the wall time.
"""

import time

import pytest

from bench.vocab import LANGUAGES, PARAM_COUNTS
from suite import harness as H
from suite.schema import load_results

QUICK = ["--device", "cpu", "--train-limit", "64", "--test-limit", "32", "--batch-size", "32", "--latency-iters",
         "0", "--threads", "1"]
# An interpreter importing torch, or a program loading LibTorch, takes longer than this on any machine.
MIN_STARTUP_SECONDS = 0.05


def timed_run(lang, cpp_exe, args, results):
    """(the run's validated results, seconds from before the process started to after it exited)."""
    t0 = time.monotonic()
    proc = H.run_trainer(lang, [*args, "--results", str(results)], cpp_exe if lang == "cpp" else None)
    wall = time.monotonic() - t0
    assert proc.returncode == 0, f"{lang} trainer failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return load_results(results), wall


@pytest.mark.parametrize("lang", LANGUAGES)
def test_startup_precedes_training_within_the_wall_time(lang, cpp_exe, tiny_data, tmp_path):
    doc, wall = timed_run(lang, cpp_exe, ["--data", str(tiny_data), *QUICK, "--repeat", "3"], tmp_path / "r.json")
    startup, hashing = doc["startup_seconds"], doc["dataset_hash_seconds"]
    assert isinstance(startup, float) and MIN_STARTUP_SECONDS < startup < wall, (startup, wall)
    assert 0 < hashing and startup + hashing + doc["total_seconds"] < wall, (startup, hashing, wall)
    assert doc["config"]["repeat"] == 3


@pytest.mark.parametrize("lang", LANGUAGES)
def test_eval_only_times_startup_to_the_first_inference_and_repeat_defaults_to_1(lang, cpp_exe, tiny_data,
                                                                                   tmp_path):
    doc, wall = timed_run(lang, cpp_exe, ["--data", str(tiny_data), *QUICK, "--eval-only"], tmp_path / "r.json")
    assert MIN_STARTUP_SECONDS < doc["startup_seconds"] < wall
    assert doc["config"]["repeat"] == 1


@pytest.mark.parametrize("lang", LANGUAGES)
def test_peak_resident_memory_is_recorded(lang, cpp_exe, tiny_data, tmp_path):
    """The whole process's peak: at least the model's weights (11 M floats) and more than LibTorch's or the
    interpreter's bare start, at most this machine's memory."""
    import os

    doc, _ = timed_run(lang, cpp_exe, ["--data", str(tiny_data), *QUICK], tmp_path / "r.json")
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert PARAM_COUNTS["resnet18"] * 4 < doc["peak_rss_bytes"] < total
