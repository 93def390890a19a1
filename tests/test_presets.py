"""The suite's presets as a user meets them: `--data official` offline says, in one visible line, that the
synthetic set replaced the official one, and runs a configuration whose every check has a threshold."""

import os
import subprocess
import sys

from conftest import OFFLINE
from suite import harness as H
from suite import thresholds as T


def test_offline_official_falls_back_loudly_to_a_configuration_with_thresholds(tmp_path):
    env = {**os.environ, "BENCH_CACHE": str(tmp_path / "cache"),
           "BENCH_CIFAR10_URL": "http://127.0.0.1:9/cifar-10-binary.tar.gz"}  # port 9 (discard): refused at once
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests/test_trainers.py", "--data", "official",
                           "--collect-only", "-p", "no:cacheprovider"],
                          cwd=H.ROOT, env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    loud = [line for line in out.splitlines() if "SYNTHETIC set" in line and "REPLACES the official CIFAR-10" in line]
    assert loud, out[-3000:]
    print(loud[0])
    assert "preset offline" in out
    for model in OFFLINE["models"].split(","):  # both models, each with a threshold: nothing skips for want of one
        assert f"test_accuracy_threshold[{model}-python-default]" in out
        key = ("synthetic", model, 1, OFFLINE["train_limit"], OFFLINE["batch_size"])
        assert T.lookup(*key) is not None, f"no threshold for the offline configuration {key}"
