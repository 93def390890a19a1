"""pytest options, the shared session fixtures and pytest-benchmark's hooks.

Presets, chosen by --data and the device:
  smoke     (no --data): a cached synthetic set, 1024 train / 500 test records, batch 32, lr 0.02,
            latency at batch 1 and 8, ResNet18 only. On CUDA with deterministic algorithms, so that the
            languages' accuracies agree as they do on CPU (suite/thresholds.py's max_gap).
  offline   (--data official when the official set cannot be downloaded): the smoke preset on the synthetic
            set it falls back to, both models: thresholds exist for it, so every check still asserts.
  full      (--data DIR, or --data official): all records, batch 128, lr 0.1, ResNet18 and ResNet34.
  full-cpu  (the same on a machine without a GPU): the first 5000 train / 1000 test records, so that a CPU
            run ends in minutes, not hours (--train-limit 0 --test-limit 0 for everything).
Every explicit option overrides its preset value. README.md documents every option and marker.
"""

import json
import os
import platform
import subprocess
from pathlib import Path

import pytest

from bench.vocab import DEVICES, FLAGS, INFERENCE_PATHS, LANGUAGES, MODELS, MODES
from suite import benchmark_compat
from suite import harness as H

# The default (smoke) run trains ResNet18 only, to stay within 10 minutes on 2 CPU cores with the C++ build
# and every correctness test; ResNet34 (twice the time) is in the full presets and `tox -e smoke`.
SMOKE = {"train_limit": 1024, "test_limit": 500, "batch_size": 32, "lr": 0.02, "synth_train": 5000,
         "synth_test": 1000, "latency_iters": 20, "latency_batch_sizes": "1,8", "models": "resnet18"}
FULL = {"train_limit": 0, "test_limit": 0, "batch_size": 128, "lr": 0.1, "latency_iters": 100,
        "latency_batch_sizes": "1,32,128", "models": "resnet18,resnet34"}
# 20 latency samples, not 100: at batch 128 on 2 CPU cores 100 samples took half of every trainer's time.
FULL_CPU = {**FULL, "train_limit": 5000, "test_limit": 1000, "latency_iters": 20}
OFFLINE = {**SMOKE, "models": "resnet18,resnet34"}
OFFICIAL = "official"  # --data official: bench.data's default folder (downloaded on first use)
# pytest-benchmark turns itself off under pytest-xdist correctly from this version on.
MIN_PYTEST_BENCHMARK = (5, 2, 2)


def pytest_addoption(parser):
    g = parser.getgroup("torch-api-bench")
    g.addoption("--epochs", type=int, default=1, help="training epochs per trainer run (default 1)")
    g.addoption("--device", default="auto", help=f"{' | '.join(DEVICES)} (default auto)")
    g.addoption("--data", default=None,
                help="CIFAR-10 binary folder, or 'official' (downloaded to the cache on first use; offline: the "
                     "synthetic set, with a warning) (default: the cached synthetic smoke set)")
    g.addoption("--train-limit", type=int, default=None, help="first N training records (0 = all)")
    g.addoption("--test-limit", type=int, default=None, help="first N test records (0 = all)")
    g.addoption("--batch-size", type=int, default=None, help="training batch size")
    g.addoption("--lr", type=float, default=None, help="peak learning rate")
    g.addoption("--models", default=None,
                help="comma-separated models (default: resnet18 for the smoke preset, resnet18,resnet34 otherwise)")
    g.addoption("--langs", default=",".join(LANGUAGES), help=f"comma-separated languages: {','.join(LANGUAGES)}")
    g.addoption("--modes", default="default",
                help=f"comma-separated trainer modes: {','.join(MODES)} (default: default)")
    g.addoption("--threads", type=int, default=0, help="CPU intra-op threads per trainer (0 = torch default)")
    g.addoption("--workers", type=int, default=2, help="DataLoader workers of the idiomatic mode (default 2)")
    g.addoption("--seed", type=int, default=0, help="seed for both trainers")
    g.addoption("--warmup-steps", type=int, default=None,
                help="untimed training steps before the first timed one (default: the trainers' own default)")
    g.addoption("--latency-iters", type=int, default=None, help="latency samples per batch size and path")
    g.addoption("--latency-batch-sizes", default=None, help="comma-separated latency batch sizes")
    g.addoption("--inference-paths", default="eager",
                help=f"comma-separated latency paths: {','.join(INFERENCE_PATHS)} (default: eager)")
    g.addoption("--concurrency", default="",
                help="comma-separated thread counts for concurrent batch-1 inference (default: none)")
    g.addoption("--concurrency-iters", type=int, default=50, help="requests per thread (default 50)")
    g.addoption("--results-dir", default=None, help="keep each trainer's results JSON here")
    g.addoption("--report", default=None, help="write the report (suite.report) for this run's results here")
    g.addoption("--build-dir", default=str(H.ROOT / "build"), help="C++ build folder (default build/)")


def _split(text):
    return [x for x in text.split(",") if x]


def _usage(msg):
    raise pytest.UsageError(f"torch-api-bench: {msg}")


def _cuda_available():
    import torch

    return torch.cuda.is_available()


def _positive_ints(name, text, allow_empty=False):
    try:
        values = [int(x) for x in _split(text)]
    except ValueError:
        values = None
    if values is None or (not values and not allow_empty) or any(v < 1 for v in values):
        _usage(f"--{name} must be comma-separated positive integers, got {text!r}")
    return values


class RunConfig:
    """The validated suite options, with the preset applied."""

    def __init__(self, opt):
        self.device = opt("device")
        self.data = opt("data")
        self.data_dir, self.why_not_official = (Path(self.data) if self.data and self.data != OFFICIAL else None), None
        if self.data == OFFICIAL:
            from filelock import FileLock

            from bench.data import cache_dir, default_data

            cache_dir().mkdir(parents=True, exist_ok=True)
            with FileLock(cache_dir() / ".default-data.lock"):  # xdist workers: one download, one synthetic set
                self.data_dir, self.why_not_official = default_data()
        if not self.data or self.why_not_official:
            self.preset, preset = ("smoke", SMOKE) if not self.data else ("offline", OFFLINE)
        elif self.device == "cpu" or (self.device == "auto" and not _cuda_available()):
            self.preset, preset = "full-cpu", FULL_CPU
        else:
            self.preset, preset = "full", FULL
        pick = lambda name: preset[name] if opt(name) is None else opt(name)  # noqa: E731
        self.epochs = opt("epochs")
        self.train_limit, self.test_limit = pick("train_limit"), pick("test_limit")
        self.batch_size, self.lr = pick("batch_size"), pick("lr")
        self.latency_iters, self.latency_batch_sizes = pick("latency_iters"), pick("latency_batch_sizes")
        self.models, self.langs, self.modes = _split(pick("models")), _split(opt("langs")), _split(opt("modes"))
        self.inference_paths = _split(opt("inference_paths"))
        self.concurrency, self.concurrency_iters = opt("concurrency"), opt("concurrency_iters")
        self.threads, self.workers, self.seed = opt("threads"), opt("workers"), opt("seed")
        self.warmup_steps = opt("warmup_steps")
        # Smoke-sized runs on CUDA: deterministic algorithms, so the two languages' 32 steps stay in lockstep
        # as on CPU; without, atomics and autotuned algorithms drift the runs apart by more than noise.
        self.deterministic = preset is not FULL_CPU and preset is not FULL and self.device != "cpu" and \
            (self.device == "cuda" or _cuda_available())
        self.validate()

    def validate(self):
        # The options the suite passes on to both trainers get the trainers' own checks (bench/vocab.py FLAGS):
        # a value a trainer would refuse is a usage error here, before anything runs.
        from bench.flags import UsageError, parse_value

        for flag in FLAGS:
            value = getattr(self, flag.dest, None)
            if value is not None and flag.kind != "switch" and flag.dest not in ("inference_paths", "data"):
                try:
                    parse_value(flag, value if isinstance(value, str) else repr(value))
                except UsageError as err:
                    _usage(str(err))
        for option, values, known in [("models", self.models, tuple(MODELS)), ("langs", self.langs, LANGUAGES),
                                      ("modes", self.modes, tuple(MODES)),
                                      ("inference-paths", self.inference_paths, INFERENCE_PATHS)]:
            bad = [v for v in values if v not in known]
            if bad or not values or len(set(values)) != len(values):
                _usage(f"--{option}: unknown, repeated or no value(s) {bad or values}; choose from {', '.join(known)}")
        if self.data and self.data != OFFICIAL and not Path(self.data).is_dir():
            _usage(f"--data folder not found: {self.data}")
        if self.device == "cuda" and not _cuda_available():
            _usage("--device cuda was requested but CUDA is not available on this machine")

    def data_line(self):
        """What data the trainers read; offline, one loud line that the synthetic set replaced the official."""
        if self.why_not_official:
            return (f"DATA: the SYNTHETIC set {self.data_dir} REPLACES the official CIFAR-10 "
                    f"({self.why_not_official}); results say dataset kind 'synthetic', and the "
                    f"'{self.preset}' preset's sizes apply")
        return f"data: {self.data_dir or 'the synthetic smoke set'}"

    def describe(self):
        return (f"preset {self.preset}, data {self.data or 'synthetic smoke set'}"
                f"{' (SYNTHETIC fallback)' if self.why_not_official else ''}, models {','.join(self.models)}, "
                f"langs {','.join(self.langs)}, modes {','.join(self.modes)}, epochs {self.epochs}, "
                f"batch {self.batch_size}, lr {self.lr}, train/test limit {self.train_limit}/{self.test_limit}, "
                f"device {self.device}{' (deterministic)' if self.deterministic else ''}, "
                f"latency {','.join(self.inference_paths)} at bs {self.latency_batch_sizes}"
                + (f", concurrency {self.concurrency}" if self.concurrency else ""))

    @property
    def latency_sizes(self):
        return _positive_ints("latency-batch-sizes", self.latency_batch_sizes)

    @property
    def concurrency_counts(self):
        return _positive_ints("concurrency", self.concurrency, allow_empty=True)

    def trainer_args(self, model, data_dir, mode="default"):
        args = ["--model", model, "--epochs", str(self.epochs), "--batch-size", str(self.batch_size),
                "--lr", repr(self.lr), "--data", str(data_dir), "--train-limit", str(self.train_limit),
                "--test-limit", str(self.test_limit), "--device", self.device, "--seed", str(self.seed),
                "--threads", str(self.threads), "--workers", str(self.workers),
                "--latency-iters", str(self.latency_iters), "--latency-batch-sizes", self.latency_batch_sizes,
                "--inference-paths", ",".join(self.inference_paths), "--concurrency", self.concurrency,
                "--concurrency-iters", str(self.concurrency_iters)]
        if self.warmup_steps is not None:
            args += ["--warmup-steps", str(self.warmup_steps)]
        if self.deterministic:
            args += ["--deterministic"]
        if "aoti" in self.inference_paths:
            args += ["--aoti-dir", str(self.aoti_packages(model, mode))]
        return args + list(MODES[mode])

    def aoti_packages(self, model, mode):
        """The folder of AOTInductor packages a run of `mode` loads, one per latency batch size, built on first
        use (cached across sessions) in a process of its own, so that no trainer's time includes a compile."""
        device = self.device if self.device != "auto" else ("cuda" if _cuda_available() else "cpu")
        precision, channels_last = H.mode_precision_and_layout(mode)
        try:
            return H.aoti_packages(model, device, precision, channels_last, self.latency_sizes)
        except H.BuildError as err:
            pytest.fail(str(err), pytrace=False)


def pytest_configure(config):
    from importlib.metadata import version

    found = tuple(int(p) for p in version("pytest-benchmark").split(".")[:3] if p.isdigit())
    if found < MIN_PYTEST_BENCHMARK:
        _usage(f"pytest-benchmark >= {'.'.join(map(str, MIN_PYTEST_BENCHMARK))} is required "
               f"(it turns itself off under xdist correctly), found {version('pytest-benchmark')}")
    _pin_xdist_worker_to_gpu()  # before anything asks torch about CUDA, which reads the variable once
    config.bench_run = RunConfig(config.getoption)
    config.bench_result_files = []


def pytest_report_header(config):
    return [f"torch-api-bench: {config.bench_run.describe()}", f"torch-api-bench: {config.bench_run.data_line()}"]


def _pin_xdist_worker_to_gpu():
    """On a multi-GPU host, xdist worker gwN (and the trainers it starts) sees only one GPU of those visible."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    count = 0
    if visible is None:
        import torch

        count = torch.cuda.device_count()
    pinned = H.gpus_for_worker(worker, visible, count)
    if pinned is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = pinned


def pytest_generate_tests(metafunc):
    """The [model x language x mode] matrix of the trainer tests, and the latency/concurrency points."""
    cfg = metafunc.config.bench_run
    # A test that parametrizes a name itself (e.g. @pytest.mark.parametrize("lang", LANGUAGES)) keeps it.
    explicit = {name.strip() for mark in metafunc.definition.iter_markers("parametrize")
                for name in (mark.args[0].split(",") if isinstance(mark.args[0], str) else mark.args[0])}
    for name, values in [("model", cfg.models), ("lang", cfg.langs), ("mode", cfg.modes),
                         ("latency_path", cfg.inference_paths)]:
        if name in metafunc.fixturenames and name not in explicit:
            metafunc.parametrize(name, values)
    if "latency_bs" in metafunc.fixturenames:
        metafunc.parametrize("latency_bs", cfg.latency_sizes, ids=lambda b: f"bs{b}")
    if "concurrency_n" in metafunc.fixturenames:
        # No thread counts requested: one parameter that skips with the reason, so nothing passes silently.
        metafunc.parametrize("concurrency_n", cfg.concurrency_counts or [None],
                             ids=lambda n: f"x{n}" if n else "not-requested")


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
def tiny_data(cache_dir):
    """A tiny synthetic set (320 train / 64 test records) for the fast correctness tests, cached."""
    return H.ensure_synthetic(cache_dir / "synthetic-320-64-7", 320, 64, seed=7)


@pytest.fixture(scope="session")
def expected_params():
    """Parameter counts of the CIFAR ResNets (torchvision's layout with a 3x3 stem and 10 classes)."""
    return {"resnet18": 11_173_962, "resnet34": 21_282_122}


def run_for_results(lang, args, exe, results, **kw):
    """Run one trainer with `--results results`: (its validated document, the process), or (why it failed, the
    process) when it exits non-zero."""
    from suite.schema import load_results

    proc = H.run_trainer(lang, [*args, "--results", str(results)], exe, **kw)
    if proc.returncode:
        return f"{lang} trainer failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}", proc
    return load_results(results), proc


def run_once(done, key, run):
    """run() once per key for the session (`done` remembers); a run that failed (returned a message) fails every
    test that asks for it, with that message."""
    if key not in done:
        done[key] = run()
    if isinstance(done[key], str):
        pytest.fail(done[key], pytrace=False)
    return done[key]


@pytest.fixture(scope="session")
def cached_run(exe_for, tmp_path_factory):
    """cached_run(lang, args): run that trainer once per session for each (lang, args), with --results in a
    folder of its own ("{out}" in args names that folder); returns (validated results, folder, stderr). A
    failed run fails every test that asks for it, with its stderr."""
    done = {}

    def run(lang, args):
        out = tmp_path_factory.mktemp(lang)
        doc, proc = run_for_results(lang, [a.replace("{out}", str(out)) for a in args], exe_for(lang),
                                    out / "results.json")
        return doc if isinstance(doc, str) else (doc, out, proc.stderr)
    return lambda lang, args: run_once(done, (lang, tuple(args)), lambda: run(lang, args))


def assert_one_line_error(proc, lang, code, *fragments):
    """Exit `code` and exactly one stderr line `<prog>: error: ...` containing every fragment (key fragments,
    not a library's exact wording); returns that line."""
    from bench.vocab import PROGRAMS

    assert proc.returncode == code, f"exit {proc.returncode}, stderr:\n{proc.stderr[-2000:]}"
    errors = [line for line in proc.stderr.splitlines() if line.startswith(f"{PROGRAMS[lang]}: error: ")]
    assert len(errors) == 1, proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="session")
def one_line_error():
    """The check every bad-input test makes (assert_one_line_error), as a fixture for test modules."""
    return assert_one_line_error


@pytest.fixture(scope="session")
def bench_data(run_config, request):
    return run_config.data_dir or request.getfixturevalue("smoke_data")


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


def live_line(config, label):
    """A writer of one trainer's stderr lines (which trainer, each epoch's progress) to the terminal as they
    come, past pytest's output capture: a long run shows what it is doing without -s."""
    capman = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")

    def write(line):
        if reporter is None or capman is None:
            return
        with capman.global_and_fixture_disabled():
            reporter.write_line(f"[{label}] {line.rstrip()}")
    return write


@pytest.fixture(scope="session")
def trainer_results(request, run_config, bench_data, results_dir, exe_for):
    """trainer_results(model, lang, mode): run that trainer once per session with the suite's config and
    share its validated results document; a failed run fails every test that reads it, with its stderr."""
    done = {}

    def run(model, lang, mode):
        out = results_dir / f"{lang}-{model}-{mode}.json"
        echo = live_line(request.config, f"{lang} {model} {mode}")
        echo("starting the trainer")
        doc, _ = run_for_results(lang, run_config.trainer_args(model, bench_data, mode), exe_for(lang), out,
                                 echo=echo)
        if not isinstance(doc, str):
            request.config.bench_result_files.append(out)  # for --report
        return doc
    return lambda model, lang, mode="default": run_once(done, (model, lang, mode), lambda: run(model, lang, mode))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    """Before pytest-benchmark saves: a failed or interrupted session must not become a baseline.
    After: the report of this session's results, when --report asks for one."""
    if exitstatus != 0:
        benchmark_compat.cancel_saving(session.config, f"the session ended with exit status {int(exitstatus)} "
                                       "(failed or interrupted); a baseline holds complete runs only")
    yield
    out = session.config.getoption("report")
    files = session.config.bench_result_files
    if out and files:
        from suite.report import build_report

        path = build_report(files, Path(out))
        print(f"\ntorch-api-bench: report written to {path}")


def pytest_sessionstart(session):
    session.config.bench_session = session


@pytest.hookimpl(wrapper=True)
def pytest_terminal_summary(terminalreporter, config):
    """pytest-benchmark signals a failed --benchmark-compare-fail gate by raising out of the terminal summary,
    which prints a traceback. Its own "Performance has regressed" lines are already shown: end with one line
    and exit status 1 instead."""
    if config.bench_run.why_not_official:  # said at the start (header) and again where a reader looks last
        terminalreporter.write_line(f"torch-api-bench: {config.bench_run.data_line()}", yellow=True, bold=True)
    try:
        return (yield)
    except Exception as err:
        if not benchmark_compat.is_performance_regression(err):
            raise
        terminalreporter.write_line("torch-api-bench: benchmark gate failed: performance has regressed against "
                                    "the baseline (the lines above name each benchmark)", red=True, bold=True)
        if config.bench_session.exitstatus == pytest.ExitCode.OK:
            config.bench_session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=H.ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def pytest_benchmark_update_machine_info(config, machine_info):
    """What a stored baseline was measured on: GPUs, driver, CUDA, cuDNN, torch, torchvision, CPU, commit."""
    import torch
    import torchvision

    from bench.runtime import cpu_name

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    driver = None
    if gpus:
        try:
            driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=10).stdout.split("\n")[0] or None
        except (OSError, subprocess.SubprocessError):
            pass
    machine_info["torch_api_bench"] = {
        "gpu_names": gpus, "gpu_count": len(gpus), "gpu": gpus[0] if gpus else "none (CPU)",
        "driver": driver, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if gpus else None,
        "torch": torch.__version__, "torchvision": torchvision.__version__, "cpu_model": cpu_name(),
        "cpu_threads": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
        "git_commit": _git_commit(), "suite": json.dumps(vars(config.bench_run), default=str),
    }


def pytest_benchmark_compare_machine_info(config, benchmarksession, machine_info, compared_benchmark):
    """A baseline from other hardware says little about this machine: say so, naming both."""
    ours = machine_info.get("torch_api_bench", {})
    theirs = compared_benchmark.get("machine_info", {}).get("torch_api_bench", {})
    for what, key in (("GPU", "gpu"), ("CPU", "cpu_model")):
        if ours.get(key) != theirs.get(key):
            benchmark_compat.log_warning(benchmarksession, (
                f"torch-api-bench: comparing against a baseline measured on a different {what}: "
                f"this run: {ours.get(key)!r}, baseline: {theirs.get(key)!r}. "
                "Timing differences mostly reflect the hardware."))
            return
