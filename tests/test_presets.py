"""The suite's presets and trainer arguments as a user meets them: `--data official` offline says, in one visible
line, that the synthetic set replaced the official one, and runs a configuration whose every check has a threshold;
a run with the aoti inference path gets its packages built and their folder passed."""

import copy
import os
import subprocess
import sys

import pytest

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


@pytest.mark.parametrize("mode, precision, channels_last", [("default", "fp32", False), ("bf16-cl", "bf16", True),
                                                           ("channels-last", "fp32", True)])
def test_a_run_with_the_aoti_path_gets_the_package_folder_of_its_mode(run_config, tmp_path, monkeypatch, mode,
                                                                      precision, channels_last):
    """With aoti among the inference paths, the suite builds (suite.harness.aoti_packages, a process of its own)
    the packages of the mode's precision and layout at every latency batch size before the trainer starts, and
    passes their folder."""
    from suite import harness

    calls = []
    monkeypatch.setattr(harness, "aoti_packages", lambda *args: calls.append(args) or tmp_path)
    cfg = copy.copy(run_config)
    cfg.device, cfg.inference_paths = "cpu", ["eager"]
    assert "--aoti-dir" not in cfg.trainer_args("resnet18", tmp_path, mode) and not calls
    cfg.inference_paths = ["eager", "aoti"]
    args = cfg.trainer_args("resnet18", tmp_path, mode)
    assert args[args.index("--aoti-dir") + 1] == str(tmp_path)
    assert calls == [("resnet18", "cpu", precision, channels_last, cfg.latency_sizes)]
