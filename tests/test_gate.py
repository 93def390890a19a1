"""The regression gate works end to end: save a baseline, compare an unchanged tree against it, and fail
when a trainer is deliberately slowed down (the BENCH_SLEEP_PER_STEP_MS test hook, README "Test hooks").

Each step is a real `pytest` run of tests/test_benchmarks.py in a subprocess with a tiny configuration and
its own benchmark storage, so the repository's baselines are never touched.
"""

import json
import os
import subprocess
import sys

import pytest

from bench.vocab import LANGUAGES
from suite import harness as H

TINY = ["--device", "cpu", "--models", "resnet18", "--train-limit", "64", "--test-limit", "32", "--batch-size", "32",
        "--latency-iters", "5", "--latency-batch-sizes", "1", "--threads", "2"]
# On CPU on any host: a 2-step epoch on a GPU lasts milliseconds, whose jitter would pass any threshold.
# The unchanged rerun must pass and the slowed one fail at the same threshold. Two identical runs of a
# ~1 s epoch (2 steps) differ by far less than 50%; the hook adds 2 x 2 s, over +50% even when a busy
# machine makes the baseline epoch five times slower.
GATE = "--benchmark-compare-fail=median:50%"
SLOWDOWN_MS = "2000"
OTHER_GPU = "no such GPU (torch-api-bench gate test)"  # cannot match the GPU (or CPU) of any real run


def run_pytest(tmp_path, *args, env=None):
    # Run from tmp_path with a relative storage: pytest-benchmark's own machine-info warning fails on a
    # storage folder outside the working directory.
    cmd = [sys.executable, "-m", "pytest", str(H.ROOT / "tests" / "test_benchmarks.py"), "-p", "no:cacheprovider",
           "-p", "no:xdist", "--benchmark-storage=file://./storage", *TINY, *args]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    return proc, proc.stdout + proc.stderr


def test_gate_saves_trainer_samples_passes_unchanged_and_fails_when_slowed(tmp_path, cpp_exe, request):
    build = ["--build-dir", str(cpp_exe.parent)]

    # 1. Save a baseline (both languages) with the raw samples.
    results = tmp_path / "results"
    proc, out = run_pytest(tmp_path, *build, "--benchmark-save=base", "--benchmark-save-data",
                           "--results-dir", str(results))
    assert proc.returncode == 0, out[-3000:]
    [saved_file] = (tmp_path / "storage").glob("*/0001_base.json")
    saved = {b["fullname"].split("::")[-1]: b for b in json.loads(saved_file.read_text())["benchmarks"]}

    # What pytest-benchmark stored is exactly what the trainers measured, sample for sample.
    for lang in LANGUAGES:
        doc = json.loads((results / f"{lang}-resnet18-default.json").read_text())
        epoch = saved[f"test_epoch_time[resnet18-{lang}-default]"]
        assert epoch["stats"]["data"] == [e["train_seconds"] for e in doc["epochs"]]
        [lat] = doc["latency"]
        stored = saved[f"test_latency[resnet18-{lang}-default-eager-bs1]"]["stats"]
        assert stored["data"] == [ms / 1000 for ms in lat["samples_ms"]]
        assert stored["median"] == pytest.approx(lat["median_ms"] / 1000, rel=1e-12)
        assert saved[f"test_epoch_time[resnet18-{lang}-default]"]["extra_info"]["test_accuracy"] == \
            [e["test_accuracy"] for e in doc["epochs"]]
    machine = json.loads(saved_file.read_text())["machine_info"]["torch_api_bench"]
    assert machine["gpu"] and machine["torch"] and machine["cpu_model"] and "git_commit" in machine

    # A copy of the baseline that claims another GPU: comparing against it warns, naming both.
    other = json.loads(saved_file.read_text())
    other["machine_info"]["torch_api_bench"]["gpu"] = OTHER_GPU
    (saved_file.parent / "0002_othergpu.json").write_text(json.dumps(other))

    # 2. Unchanged tree: the gate passes (epoch time only; latency of 5 samples is too noisy to gate here).
    proc, out = run_pytest(tmp_path, *build, "-k", "epoch_time", "--langs", "python",
                           "--benchmark-compare=0002", GATE)
    assert proc.returncode == 0, out[-3000:]
    assert f"different GPU: this run: {machine['gpu']!r}, baseline: {OTHER_GPU!r}" in out

    # 3. The same gate with every training step slowed down: it fails and names the slowed benchmark.
    # (Python only: test_parity checks that the hook slows the C++ trainer's timed epoch the same way.)
    proc, out = run_pytest(tmp_path, *build, "-k", "epoch_time", "--langs", "python", "--benchmark-compare=0001",
                           GATE, env={"BENCH_SLEEP_PER_STEP_MS": SLOWDOWN_MS})
    print(out[-1500:])
    assert proc.returncode == 1, out[-3000:]
    assert "Performance has regressed" in out and "torch-api-bench: benchmark gate failed" in out
    assert "Traceback" not in out, "the gate's failure should be one line, not pytest-benchmark's traceback"
    assert "test_epoch_time[resnet18-python-default]" in out.split("Performance has regressed")[1]
