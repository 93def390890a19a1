"""Schema version 4 in both trainers: `startup_seconds` (from the OS's start of the process to the model being
ready: just before the first training step, or the first inference with --eval-only), `peak_rss_bytes` and
`config.repeat` (--repeat, recorded, changes nothing); version 6: the dataset's SHA-256 after the start-up, timed
apart (`dataset_hash_seconds`).

The start-up time is checked against what the test itself sees, so the checks hold on any machine: the trainer
starts after the run cache's clock starts and its training window follows the start-up, so both fit in the wall
time (Run.seconds). The runs are the session's shared ones: the canonical tiny run, and the eval-only run of the
other language's weights (tests/test_parity.py's cross-load).
"""

import os

import pytest

from bench.vocab import LANGUAGES
from suite.plugin import tiny

# An interpreter importing torch, or a program loading LibTorch, takes longer than this on any machine.
MIN_STARTUP_SECONDS = 0.05


@pytest.mark.parametrize("lang", LANGUAGES)
def test_startup_precedes_training_within_the_wall_time_and_repeat_defaults_to_1(lang, tiny_run):
    run = tiny_run(lang)
    startup, hashing = run.doc["startup_seconds"], run.doc["dataset_hash_seconds"]
    assert isinstance(startup, float) and MIN_STARTUP_SECONDS < startup < run.seconds, (startup, run.seconds)
    assert 0 < hashing and startup + hashing + run.doc["total_seconds"] < run.seconds, (startup, hashing, run.seconds)
    assert run.doc["config"]["repeat"] == 1


@pytest.mark.parametrize("lang", LANGUAGES)
def test_eval_only_times_startup_to_the_first_inference_and_records_the_repeat(lang, cross_read):
    run = cross_read(lang)
    assert run.doc["config"]["eval_only"] and MIN_STARTUP_SECONDS < run.doc["startup_seconds"] < run.seconds
    assert run.doc["config"]["repeat"] == 3


@pytest.mark.parametrize("lang", LANGUAGES)
def test_peak_resident_memory_is_recorded(lang, tiny_run, expected_params):
    """The whole process's peak: at least the model's weights (11 M floats) and more than LibTorch's or the
    interpreter's bare start, at most this machine's memory."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert expected_params[tiny.MODEL] * 4 < tiny_run(lang).doc["peak_rss_bytes"] < total
