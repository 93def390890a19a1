"""pytest options, the shared session fixtures and pytest-benchmark's machine info.

Two presets, chosen by --data:
  smoke (no --data): a cached synthetic set, 1024 train / 500 test records, batch 32, lr 0.02, 1 epoch.
  full  (--data DIR): all records of DIR, batch 128, lr 0.1.
Every explicit option overrides its preset value.
"""

import json
import os
import platform
import subprocess
from pathlib import Path

import pytest

from bench import harness as H

SMOKE = {"train_limit": 1024, "test_limit": 500, "batch_size": 32, "lr": 0.02, "synth_train": 5000,
         "synth_test": 1000, "latency_iters": 20, "latency_batch_sizes": "1,32"}
FULL = {"train_limit": 0, "test_limit": 0, "batch_size": 128, "lr": 0.1, "latency_iters": 100,
        "latency_batch_sizes": "1,32,128"}


def pytest_addoption(parser):
    g = parser.getgroup("torch-api-bench")
    g.addoption("--epochs", type=int, default=1, help="training epochs per trainer run (default 1)")
    g.addoption("--device", default="auto", help="auto | cpu | cuda (default auto)")
    g.addoption("--data", default=None, help="CIFAR-10 binary folder (default: cached synthetic smoke set)")
    g.addoption("--train-limit", type=int, default=None, help="first N training records (0 = all)")
    g.addoption("--test-limit", type=int, default=None, help="first N test records (0 = all)")
    g.addoption("--batch-size", type=int, default=None, help="training batch size")
    g.addoption("--lr", type=float, default=None, help="peak learning rate")
    g.addoption("--models", default="resnet18,resnet34", help="comma-separated models")
    g.addoption("--langs", default="python,cpp", help="comma-separated languages: python,cpp")
    g.addoption("--threads", type=int, default=0, help="CPU intra-op threads per trainer (0 = torch default)")
    g.addoption("--seed", type=int, default=0, help="seed for both trainers")
    g.addoption("--latency-iters", type=int, default=None, help="latency samples per batch size")
    g.addoption("--latency-batch-sizes", default=None, help="comma-separated latency batch sizes")
    g.addoption("--results-dir", default=None, help="keep each trainer's results JSON here")
    g.addoption("--report", default=None, help="write the report (bench.report) for this run's results here")
    g.addoption("--build-dir", default=str(H.ROOT / "build"), help="C++ build folder (default build/)")


def _split(text):
    return [x for x in text.split(",") if x]


def _usage(msg):
    raise pytest.UsageError(f"torch-api-bench: {msg}")


class RunConfig:
    """The validated suite options, with the preset applied."""

    def __init__(self, opt):
        preset = FULL if opt("data") else SMOKE
        pick = lambda name: preset[name] if opt(name) is None else opt(name)  # noqa: E731
        self.epochs = opt("epochs")
        self.device = opt("device")
        self.data = opt("data")
        self.train_limit, self.test_limit = pick("train_limit"), pick("test_limit")
        self.batch_size, self.lr = pick("batch_size"), pick("lr")
        self.latency_iters, self.latency_batch_sizes = pick("latency_iters"), pick("latency_batch_sizes")
        self.models, self.langs = _split(opt("models")), _split(opt("langs"))
        self.threads, self.seed = opt("threads"), opt("seed")
        self.preset = "full" if opt("data") else "smoke"
        self.validate()

    def validate(self):
        if self.epochs < 1:
            _usage(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            _usage(f"--batch-size must be >= 1, got {self.batch_size}")
        for name in ("train_limit", "test_limit", "threads", "latency_iters"):
            if getattr(self, name) < 0:
                _usage(f"--{name.replace('_', '-')} must be >= 0")
        if not self.lr > 0:
            _usage(f"--lr must be > 0, got {self.lr}")
        if self.device not in ("auto", "cpu", "cuda"):
            _usage(f"--device must be auto, cpu or cuda, got {self.device!r}")
        bad = [m for m in self.models if m not in H.MODELS] + [lang for lang in self.langs if lang not in H.LANGS]
        if bad or not self.models or not self.langs:
            _usage(f"unknown or empty --models/--langs value(s) {bad}; models: {H.MODELS}, langs: {H.LANGS}")
        try:
            sizes = [int(x) for x in _split(self.latency_batch_sizes)]
        except ValueError:
            sizes = []
        if not sizes or min(sizes) < 1:
            _usage(f"--latency-batch-sizes must be positive integers, got {self.latency_batch_sizes!r}")
        if self.data and not Path(self.data).is_dir():
            _usage(f"--data folder not found: {self.data}")
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                _usage("--device cuda was requested but CUDA is not available on this machine")

    def trainer_args(self, model, data_dir):
        return ["--model", model, "--epochs", str(self.epochs), "--batch-size", str(self.batch_size),
                "--lr", repr(self.lr), "--data", str(data_dir), "--train-limit", str(self.train_limit),
                "--test-limit", str(self.test_limit), "--device", self.device, "--seed", str(self.seed),
                "--threads", str(self.threads), "--latency-iters", str(self.latency_iters),
                "--latency-batch-sizes", self.latency_batch_sizes]


def pytest_configure(config):
    config.bench_run = RunConfig(config.getoption)
    _pin_xdist_worker_to_gpu()


def _pin_xdist_worker_to_gpu():
    """On a multi-GPU host, xdist worker gwN (and the trainers it starts) sees only GPU N mod count."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or "CUDA_VISIBLE_DEVICES" in os.environ:
        return
    import torch

    count = torch.cuda.device_count()
    if count > 1:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(int(worker[2:]) % count)


@pytest.fixture(scope="session")
def run_config(request):
    return request.config.bench_run


@pytest.fixture(scope="session")
def cache_dir():
    from bench.data import cache_dir

    return cache_dir()


@pytest.fixture(scope="session")
def smoke_data(cache_dir):
    """The synthetic smoke set, generated once and cached across sessions."""
    s = SMOKE
    return H.ensure_synthetic(cache_dir / f"synthetic-{s['synth_train']}-{s['synth_test']}-0",
                              s["synth_train"], s["synth_test"])


@pytest.fixture(scope="session")
def bench_data(run_config, smoke_data):
    return Path(run_config.data) if run_config.data else smoke_data


@pytest.fixture(scope="session")
def cpp_build(request):
    """Build once per session. Returns the executable or the BuildError, which every C++ test reports."""
    try:
        return H.build_cpp(Path(request.config.getoption("build_dir")))
    except H.BuildError as err:
        return err


@pytest.fixture(scope="session")
def cpp_exe(cpp_build):
    if isinstance(cpp_build, H.BuildError):
        pytest.fail(str(cpp_build), pytrace=False)
    return cpp_build


@pytest.fixture(scope="session")
def exe_for(request):
    """exe_for(lang): the C++ executable for 'cpp' (built on first use), None for 'python'."""
    def get(lang):
        return request.getfixturevalue("cpp_exe") if lang == "cpp" else None
    return get


@pytest.fixture(scope="session")
def results_dir(request, tmp_path_factory):
    path = request.config.getoption("results_dir")
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        return Path(path)
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="session")
def trainer_results(request, run_config, bench_data, results_dir, exe_for):
    """trainer_results(model, lang): run that trainer once per session with the suite's config; share the doc."""
    from bench.results import load_results

    done = {}

    def get(model, lang):
        key = (model, lang)
        if key not in done:
            out = results_dir / f"{lang}-{model}.json"
            proc = H.run_trainer(lang, run_config.trainer_args(model, bench_data) + ["--results", str(out)],
                                 exe_for(lang))
            if proc.returncode:
                done[key] = f"{lang} trainer failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
            else:
                done[key] = load_results(out)
                request.config.bench_result_files.append(out)
        if isinstance(done[key], str):
            pytest.fail(done[key], pytrace=False)
        return done[key]
    return get


def pytest_sessionstart(session):
    session.config.bench_result_files = []


def pytest_sessionfinish(session, exitstatus):
    out = session.config.getoption("report")
    files = getattr(session.config, "bench_result_files", [])
    if out and files:
        from bench.report import build_report

        path = build_report(files, Path(out))
        print(f"\ntorch-api-bench: report written to {path}")


def _git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=H.ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def pytest_benchmark_update_machine_info(config, machine_info):
    """What a stored baseline was measured on: GPUs, driver, CUDA, cuDNN, torch, torchvision, CPU, commit."""
    import torch

    try:
        import torchvision

        tv = torchvision.__version__
    except Exception:  # torchvision is optional for the core suite; record why it is absent
        tv = None
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    driver = None
    if gpus:
        try:
            driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=10).stdout.split("\n")[0] or None
        except (OSError, subprocess.SubprocessError):
            pass
    from bench.train import cpu_name

    machine_info["torch_api_bench"] = {
        "gpu_names": gpus, "gpu_count": len(gpus), "gpu": gpus[0] if gpus else "none (CPU)",
        "driver": driver, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if gpus else None,
        "torch": torch.__version__, "torchvision": tv, "cpu_model": cpu_name(), "cpu_threads": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "platform": platform.platform(), "git_commit": _git_commit(),
        "suite": json.dumps(vars(config.bench_run), default=str),
    }


def pytest_benchmark_compare_machine_info(config, benchmarksession, machine_info, compared_benchmark):
    """A baseline from another GPU says nothing about this one: say so, naming both."""
    ours = machine_info.get("torch_api_bench", {}).get("gpu")
    theirs = compared_benchmark.get("machine_info", {}).get("torch_api_bench", {}).get("gpu")
    if ours != theirs:
        benchmarksession.logger.warning(
            f"torch-api-bench: comparing against a baseline measured on a different GPU: "
            f"this run: {ours!r}, baseline: {theirs!r}. Timing differences mostly reflect the hardware.")
