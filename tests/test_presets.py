"""The suite's presets and trainer arguments as a user meets them: `--data official` offline says, in one visible
line, that the synthetic set replaced the official one, and runs a configuration whose every check has a threshold;
building the configuration reads and downloads nothing (the run_config fixture prepares the data); a run with the
aoti inference path gets its packages built and their folder passed."""

import copy

import pytest

from suite import harness as H
from suite import thresholds as TH
from suite.plugin import config, runs
from suite.plugin.config import OFFICIAL, OFFLINE, RunConfig

# A test file for the inner session: it asks for the configuration, as every trainer test does.
ASKS_FOR_THE_CONFIGURATION = """
def test_configuration(run_config, model):
    print(run_config.describe())
"""


def test_offline_official_falls_back_loudly_to_a_configuration_with_thresholds(inner_session_imports, pytester,
                                                                              monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(pytester.path / "cache"))
    monkeypatch.setenv("BENCH_CIFAR10_URL", "http://127.0.0.1:9/cifar-10-binary.tar.gz")  # port 9 (discard): refused
    pytester.makeconftest("from suite.plugin import PLUGINS\npytest_plugins = PLUGINS\n")
    pytester.makepyfile(test_inner=ASKS_FOR_THE_CONFIGURATION)
    collected = pytester.runpytest_inprocess("--data", "official", "--collect-only", "-p", "no:cacheprovider")
    assert collected.ret == 0 and not (pytester.path / "cache").exists(), "collecting prepared data"
    result = pytester.runpytest_inprocess("--data", "official", "-s", "-v", "-p", "no:cacheprovider")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 0, out[-3000:]
    loud = [line for line in out.splitlines() if "SYNTHETIC set" in line and "REPLACES the official CIFAR-10" in line]
    assert len(loud) == 2, out[-3000:]  # when the data is prepared, and again at the end
    print(loud[0])
    assert "preset offline" in out
    models = OFFLINE["cuda" if config.cuda_available() else "cpu"]["models"].split(",")
    result.assert_outcomes(passed=len(models))
    for model in models:
        assert f"test_configuration[{model}]" in out


def bench_epochs():
    """The epochs `tox -e bench` trains (tox.ini's bench command)."""
    import configparser
    import shlex

    ini = configparser.ConfigParser(interpolation=None)
    ini.read(H.ROOT / "tox.ini")
    words = shlex.split(ini["testenv:bench"]["commands"].replace("\\\n", " "))
    return int(words[words.index("--epochs") + 1])


@pytest.mark.parametrize("device", sorted(OFFLINE))
def test_every_offline_run_has_a_threshold(device):
    """Offline, on either device, every model the fallback trains has an accuracy threshold at the default epochs
    (1) and at `tox -e bench`'s: nothing skips for want of one."""
    preset = OFFLINE[device]
    for model in preset["models"].split(","):
        for epochs in (1, bench_epochs()):
            key = ("synthetic", model, epochs, preset["train_limit"], preset["batch_size"])
            assert TH.lookup(*key) is not None, f"no threshold for the offline configuration {key}"


def test_a_configuration_is_built_without_reading_or_asking_torch(tmp_path, monkeypatch):
    """RunConfig is pure: the official set, not there, is not looked for; CUDA is what it is told."""
    import builtins

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    options = {"device": "auto", "data": OFFICIAL, "epochs": 1, "langs": "python,cpp", "modes": "default",
               "inference_paths": "eager", "concurrency": "", "concurrency_iters": 50, "threads": 0, "workers": 2,
               "seed": 0, "warmup_steps": None, "trace_steps": 0, "repeats": 1}
    monkeypatch.setattr(config, "cuda_available", lambda: pytest.fail("RunConfig asked torch about CUDA"))
    monkeypatch.setattr(builtins, "open", lambda *a, **k: pytest.fail(f"RunConfig opened {a[0]}"))
    gpu, cpu = RunConfig(lambda name: options.get(name), cuda=True), RunConfig(lambda name: options.get(name), False)
    monkeypatch.undo()
    assert (gpu.preset, cpu.preset) == ("full", "full-cpu") and gpu.data_dir is None
    assert not (tmp_path / "cache").exists()
    offline = cpu.with_official(tmp_path / "synthetic", "no network")
    assert offline.preset == "offline" and offline.data_dir == tmp_path / "synthetic"
    # What the tests were collected with (before the data was prepared) holds for the fallback too.
    assert (offline.models, offline.latency_sizes) == (cpu.models, cpu.latency_sizes)


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
    assert "--aoti-dir" not in runs.trainer_args(cfg, "resnet18", tmp_path, mode) and not calls
    cfg.inference_paths = ["eager", "aoti"]
    args = runs.trainer_args(cfg, "resnet18", tmp_path, mode)
    assert args[args.index("--aoti-dir") + 1] == str(tmp_path)
    assert calls == [("resnet18", "cpu", precision, channels_last, cfg.latency_sizes)]
