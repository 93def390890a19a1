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

import os
from pathlib import Path

import pytest

from bench.vocab import DEVICES, FLAGS, INFERENCE_PATHS, LANGUAGES, MODELS, MODES, PARAM_COUNTS, TEST_HOOKS
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
    g.addoption("--trace-steps", type=int, default=0,
                help="each trainer records K training steps and K inference samples per batch size with the "
                     "profiler, beside its results (<results>-traces/); the report shows where a step's time goes "
                     "(default 0: off)")
    g.addoption("--repeats", type=int, default=1,
                help="trainer runs per (model, mode) and language, languages alternating, each a fresh process "
                     "(default 1)")
    g.addoption("--gate", action="store_true",
                help="at the end, the regression gate (suite/gate.py) against the newest stored baseline of this "
                     "machine and configuration; none: this run is saved as the first")
    g.addoption("--gate-baseline", default=None, help="the gate's baseline: this pytest-benchmark file")
    g.addoption("--gate-ab", default=None, metavar="REV",
                help="the interleaved A/B gate: run git revision REV's trainers alternately with this tree's (A B B A "
                     "...), same flags, and gate this tree against them (no stored baseline)")
    g.addoption("--gate-thresholds", default=None, help="the gate's thresholds (default suite/gate.toml)")
    # Data-parallel benchmarks (issue 27; suite/dist.py, tests/test_benchmarks.py test_dist_step)
    g.addoption("--world-sizes", default="",
                help="comma-separated rank counts: each language's trainer also runs as a torchrun job of that many "
                     "ranks on this machine, one thread per rank unless --threads (default: none)")


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
        # Absolute: the A/B gate's baseline side runs its trainers from another folder.
        self.data_dir = Path(self.data).resolve() if self.data and self.data != OFFICIAL else None
        self.why_not_official = None
        if self.data == OFFICIAL:
            from filelock import FileLock

            from bench.prepare import cache_dir, default_data

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
        self.trace_steps = opt("trace_steps")
        self.repeats = opt("repeats")
        self.world_sizes = _positive_ints("world-sizes", opt("world_sizes"), allow_empty=True)  # suite/dist.py
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
        if self.repeats < 1:
            _usage(f"--repeats must be 1 or more, got {self.repeats}")

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

    def data_identity(self):
        """The data by content (kind and SHA-256 of its files, bench.data.dataset_identity), not by path: a baseline
        made from the same files in another folder, or on another runner, pairs with this run. Computed once."""
        if self.data_dir is None:
            return "synthetic smoke set"
        if not hasattr(self, "_data_identity"):
            from bench.data import dataset_identity

            try:
                found = dataset_identity(self.data_dir, self.train_limit, self.test_limit)
                self._data_identity = f"{found['kind']} sha256:{found['sha256'][:16]}"
            except OSError:  # an incomplete folder: the trainers say what is missing; name it by its path here
                self._data_identity = str(self.data_dir)
        return self._data_identity

    def identity(self):
        """What a benchmark's numbers depend on besides its name (model, language, mode, path, batch size): a
        comparison pairs a benchmark only with a baseline of the same identity. JSON values, as stored."""
        return {"preset": self.preset, "data": self.data_identity(),
                "train_limit": self.train_limit, "test_limit": self.test_limit, "batch_size": self.batch_size,
                "lr": self.lr, "epochs": self.epochs, "device": self.device, "threads": self.threads,
                "workers": self.workers, "seed": self.seed, "warmup_steps": self.warmup_steps,
                "latency_iters": self.latency_iters, "deterministic": self.deterministic,
                "trace_steps": self.trace_steps}

    def trainer_args(self, model, data_dir, mode="default", repeat=1, trace_dir=None):
        args = ["--model", model, "--repeat", str(repeat), "--epochs", str(self.epochs),
                "--batch-size", str(self.batch_size), "--lr", repr(self.lr), "--data", str(data_dir),
                "--train-limit", str(self.train_limit),
                "--test-limit", str(self.test_limit), "--device", self.device, "--seed", str(self.seed),
                "--threads", str(self.threads), "--workers", str(self.workers),
                "--latency-iters", str(self.latency_iters), "--latency-batch-sizes", self.latency_batch_sizes,
                "--inference-paths", ",".join(self.inference_paths), "--concurrency", self.concurrency,
                "--concurrency-iters", str(self.concurrency_iters)]
        if self.warmup_steps is not None:
            args += ["--warmup-steps", str(self.warmup_steps)]
        if self.deterministic:
            args += ["--deterministic"]
        if self.trace_steps:
            args += ["--trace-steps", str(self.trace_steps), "--trace-dir", str(trace_dir)]
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


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark's, which compares stored runs with this configuration
def pytest_configure(config):
    from importlib.metadata import version

    found = tuple(int(p) for p in version("pytest-benchmark").split(".")[:3] if p.isdigit())
    if found < MIN_PYTEST_BENCHMARK:
        _usage(f"pytest-benchmark >= {'.'.join(map(str, MIN_PYTEST_BENCHMARK))} is required "
               f"(it turns itself off under xdist correctly), found {version('pytest-benchmark')}")
    _pin_xdist_worker_to_gpu()  # before anything asks torch about CUDA, which reads the variable once
    config.bench_run = RunConfig(config.getoption)
    config.bench_ab_commit = None
    if config.getoption("gate") or config.getoption("gate_ab"):
        _check_gate_options(config)
    elif config.getoption("gate_baseline") or config.getoption("gate_thresholds"):
        _usage("--gate-baseline and --gate-thresholds are options of the gate: add --gate (or --gate-ab REV)")
    config.bench_result_files = []
    config.bench_ab_docs = {}  # (model, mode, lang) -> the A/B baseline commit's documents, or why they failed


def _check_gate_options(config):
    from suite import gate

    rev = config.getoption("gate_ab")
    if rev is not None and (config.getoption("gate") or config.getoption("gate_baseline")):
        _usage("--gate-ab REV compares with REV's trainers run in this session: leave out --gate and "
               "--gate-baseline, which compare with a stored baseline")
    try:
        limits = gate.load_thresholds(config.getoption("gate_thresholds") or gate.THRESHOLDS)
    except gate.GateError as err:
        _usage(str(err))
    repeats, option = config.bench_run.repeats, "--gate-ab" if rev is not None else "--gate"
    if repeats < limits["min_runs_to_judge"]:
        _usage(f"{option} needs --repeats {limits['min_runs_to_judge']} or more (a verdict rests on runs, not on the "
               f"samples of one process; suite/gate.toml min_runs_to_judge), got --repeats {repeats}")
    # The A/B sides have as many runs as each other: too few, and no p-value can reach alpha (no verdict ever).
    needed = next(r for r in range(limits["min_runs_to_judge"], 1000) if gate.smallest_p(r, r) <= limits["alpha"])
    if rev is not None and repeats < needed:
        _usage(f"--gate-ab needs --repeats {needed} or more: with {repeats} runs a side the smallest possible p is "
               f"{gate.smallest_p(repeats, repeats):.3g}, above alpha {limits['alpha']} (suite/gate.toml)")
    if config.getoption("gate_baseline") and not Path(config.getoption("gate_baseline")).is_file():
        _usage(f"--gate-baseline file not found: {config.getoption('gate_baseline')}")
    if rev is not None:
        config.bench_ab_commit = H.resolve_commit(rev)
        if config.bench_ab_commit is None:
            _usage(f"--gate-ab: git does not know the revision {rev!r} in {H.ROOT}")


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
    if "world_size" in metafunc.fixturenames:  # data-parallel benchmarks (suite/dist.py): one that skips, saying why
        metafunc.parametrize("world_size", cfg.world_sizes or [None], ids=lambda w: f"x{w}" if w else "not-requested")
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
    from bench.data import synthetic_dir

    s = SMOKE
    return H.ensure_synthetic(cache_dir / synthetic_dir(s["synth_train"], s["synth_test"], 0),
                              s["synth_train"], s["synth_test"])


@pytest.fixture(scope="session")
def tiny_data(cache_dir):
    """A tiny synthetic set (320 train / 64 test records) for the fast correctness tests, cached."""
    from bench.data import synthetic_dir

    return H.ensure_synthetic(cache_dir / synthetic_dir(320, 64, 7), 320, 64, seed=7)


@pytest.fixture(scope="session")
def expected_params():
    """Parameter counts of the CIFAR ResNets (torchvision's layout with a 3x3 stem and 10 classes)."""
    return PARAM_COUNTS


def run_for_results(lang, args, exe, results, **kw):
    """Run one trainer with `--results results`: (its validated document, the process), or (why it failed, the
    process) when it exits non-zero."""
    from suite.schema import ResultsError, load_results

    proc = H.run_trainer(lang, [*args, "--results", str(results)], exe, **kw)
    if proc.returncode:
        return f"{lang} trainer failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}", proc
    try:
        return load_results(results), proc
    except ResultsError as err:  # e.g. the A/B gate's older trainers, whose documents this schema no longer reads
        return f"{lang} trainer wrote results that do not validate: {err}", proc


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
    request.config.bench_results_dir = Path(path).resolve() if path else tmp_path_factory.mktemp("results")
    return request.config.bench_results_dir


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


# The trainers' test hooks act on this tree's trainers only: the A/B gate's baseline side runs as committed.
TEST_HOOKS_OFF = dict.fromkeys(TEST_HOOKS)
THIS, BASELINE = "this tree", "baseline"


@pytest.fixture(scope="session")
def ab_tree(request, cache_dir):
    """--gate-ab: the baseline commit's source tree (exported once into the cache) and, on first use, its C++
    trainer, built with this Python's torch; None without --gate-ab."""
    commit = request.config.bench_ab_commit
    if commit is None:
        return None
    tree = H.export_commit(commit, cache_dir / "gate-ab" / commit)
    built = {}

    def exe(lang):
        if lang != "cpp":
            return None
        if "cpp" not in built:
            try:
                built["cpp"] = H.build_cpp(tree / "build", source=tree)
            except H.BuildError as err:
                built["cpp"] = err
        return built["cpp"]
    return tree, exe


@pytest.fixture(scope="session")
def trainer_runs(request, run_config, bench_data, results_dir, exe_for, ab_tree):
    """trainer_runs(model, mode): {language: its --repeats validated results documents, or why its run failed},
    run once per session. The languages alternate (python, cpp, python, cpp, ...), each run a fresh process, so
    that a drift of the machine's speed falls on both alike; a language whose run fails runs no more repeats.
    With --gate-ab each run of this tree is paired with one of the baseline commit's, in A B, B A order on odd
    and even repeats (a linear drift falls on both sides alike); those documents go to config.bench_ab_docs."""
    done = {}
    sides = [BASELINE, THIS] if ab_tree else [THIS]

    def run_one(model, lang, mode, repeat, side):
        name = f"{lang}-{model}-{mode}-r{repeat}.json"
        label = f"{lang} {model} {mode} repeat {repeat}/{run_config.repeats}"
        if side == BASELINE:
            tree, exe = ab_tree[0], ab_tree[1](lang)
            if isinstance(exe, H.BuildError):
                return f"baseline commit's {exe}"
            out, label, kw = results_dir / f"gate-ab-{tree.name[:12]}" / name, f"{label} baseline", \
                {"root": tree, "env": TEST_HOOKS_OFF}
            out.parent.mkdir(exist_ok=True)
        else:
            exe, out, kw = exe_for(lang), results_dir / name, {}
        echo = live_line(request.config, label)
        echo("starting the trainer")
        trace_dir = out.with_name(f"{out.stem}-traces")  # where the report looks for them
        doc, _ = run_for_results(lang, run_config.trainer_args(model, bench_data, mode, repeat, trace_dir), exe,
                                 out, echo=echo, **kw)
        if side == BASELINE and isinstance(doc, str):
            doc = f"baseline commit {tree.name[:12]}: {doc}"
        if side == THIS and not isinstance(doc, str):
            request.config.bench_result_files.append(out)  # for --report
        return doc

    def run_all(model, mode):
        runs = {(side, lang): [] for side in sides for lang in run_config.langs}
        for repeat in range(1, run_config.repeats + 1):
            for lang in run_config.langs:
                for side in sides if repeat % 2 else sides[::-1]:
                    if isinstance(runs[side, lang], list):
                        doc = run_one(model, lang, mode, repeat, side)
                        runs[side, lang] = doc if isinstance(doc, str) else runs[side, lang] + [doc]
        for lang in run_config.langs if ab_tree else ():
            request.config.bench_ab_docs[model, mode, lang] = runs[BASELINE, lang]
        return {lang: runs[THIS, lang] for lang in run_config.langs}
    return lambda model, mode="default": run_once(done, (model, mode), lambda: run_all(model, mode))


@pytest.fixture(scope="session")
def trainer_results(trainer_runs):
    """trainer_results(model, lang, mode): that language's results documents, one per repeat; a failed run fails
    every test that reads it, with its stderr."""
    def get(model, lang, mode="default"):
        docs = trainer_runs(model, mode)[lang]
        if isinstance(docs, str):
            pytest.fail(docs, pytrace=False)
        return docs
    return get


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
    if session.config.getoption("gate"):  # what is stored before this session: a save of its own is no baseline
        from suite import gate

        session.config.bench_stored_before = set(gate.baseline_files(benchmark_compat.storage_folder(session.config)))


@pytest.hookimpl(wrapper=True)
def pytest_terminal_summary(terminalreporter, config):
    """pytest-benchmark signals a failed --benchmark-compare-fail gate by raising out of the terminal summary,
    which prints a traceback. Its own "Performance has regressed" lines are already shown: end with one line
    and exit status 1 instead. Then --gate, our own gate."""
    if config.bench_run.why_not_official:  # said at the start (header) and again where a reader looks last
        terminalreporter.write_line(f"torch-api-bench: {config.bench_run.data_line()}", yellow=True, bold=True)
    try:
        result = yield
    except Exception as err:
        if not benchmark_compat.is_performance_regression(err):
            raise
        terminalreporter.write_line("torch-api-bench: benchmark gate failed: performance has regressed against "
                                    "the baseline (the lines above name each benchmark)", red=True, bold=True)
        _fail_session(config, pytest.ExitCode.TESTS_FAILED)
        result = None
    if config.getoption("gate") or config.getoption("gate_ab"):
        _run_gate(terminalreporter, config)
    return result


def _fail_session(config, code):
    if config.bench_session.exitstatus == pytest.ExitCode.OK:
        config.bench_session.exitstatus = code


def _run_gate(terminalreporter, config):
    from suite import gate

    def write(line):
        terminalreporter.write_line(line, red=line.startswith("torch-api-bench gate: REGRESSION"))
    if config.bench_session.exitstatus != pytest.ExitCode.OK:
        write("torch-api-bench gate: not run: the session failed (a gate compares complete runs only)")
        return
    run = benchmark_compat.session_run(config)
    if run is None:
        write("torch-api-bench gate: error: pytest-benchmark recorded nothing (disabled, e.g. under pytest-xdist: "
              "run with -p no:xdist)")
        return _fail_session(config, pytest.ExitCode.USAGE_ERROR)
    try:
        baseline, label = _interleaved_baseline(config, run) if config.bench_ab_commit else (None, None)
        storage = benchmark_compat.storage_folder(config)
        own_saves = set(gate.baseline_files(storage)) - getattr(config, "bench_stored_before", set())
        code = gate.run_gate(run, storage, label or config.getoption("gate_baseline"),
                             config.getoption("gate_thresholds") or gate.THRESHOLDS,
                             benchmark_compat.machine_id(config), write, baseline=baseline, ignore=own_saves)
    except gate.GateError as err:
        write(f"torch-api-bench gate: error: {err}")
        return _fail_session(config, pytest.ExitCode.USAGE_ERROR)
    if code:
        _fail_session(config, pytest.ExitCode.TESTS_FAILED)


def _interleaved_baseline(config, run):
    """(the A/B gate's baseline document, its label): built from the baseline commit's runs of this session, and
    kept beside its results documents."""
    import json

    from suite import gate

    commit = config.bench_ab_commit
    baseline = gate.interleaved_baseline(
        run, lambda model, mode, lang: config.bench_ab_docs.get((model, mode, lang), "not run"), commit)
    folder = getattr(config, "bench_results_dir", None)
    saved = ""
    if folder is not None and (folder / f"gate-ab-{commit[:12]}").is_dir():
        path = folder / f"gate-ab-{commit[:12]}" / "benchmarks.json"
        path.write_text(json.dumps(baseline, indent=1))
        saved = f" (samples: {path})"
    return baseline, f"commit {commit[:12]}'s trainers, run alternately with this tree's in this session{saved}"


def pytest_benchmark_update_machine_info(config, machine_info):
    """What a stored baseline was measured on: GPUs, driver, CUDA, cuDNN, torch, torchvision, CPU (suite.machine);
    the commit is in pytest-benchmark's commit_info, the suite's configuration in each benchmark's extra_info."""
    from suite.machine import machine_facts

    machine_info["torch_api_bench"] = machine_facts()


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark's own, which would dump both machine_infos whole
def pytest_benchmark_compare_machine_info(config, benchmarksession, machine_info, compared_benchmark):
    """One line naming only the machine fields that differ; and like with like: the stored benchmarks of another
    configuration are taken out of the comparison, with one line saying what differs."""
    from suite import gate

    line = gate.machine_line({"machine_info": machine_info}, compared_benchmark)
    if line:
        benchmark_compat.log_warning(benchmarksession, f"torch-api-bench: {line}")
    compared_benchmark["machine_info"] = machine_info  # said above: pytest-benchmark's check need not repeat it
    ours = config.bench_run.identity()
    stored = compared_benchmark["benchmarks"]
    kept = [b for b in stored if b.get("extra_info", {}).get("suite_config") == ours]
    if len(kept) < len(stored):
        theirs = next(b.get("extra_info", {}).get("suite_config") for b in stored if b not in kept)
        what = "; ".join(gate.differences(ours, theirs)) if theirs else "stored without its configuration"
        benchmark_compat.log_warning(benchmarksession, (
            f"torch-api-bench: {len(stored) - len(kept)} of {len(stored)} stored benchmark(s) not compared, "
            f"no verdict: their configuration differs (this run vs stored): {what}"))
    stored[:] = kept
