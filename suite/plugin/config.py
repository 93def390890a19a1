"""The presets, the suite's configuration (RunConfig), the configure hook that builds it, and the test matrix.

Presets, chosen by --data and the device:
  smoke     (no --data): a cached synthetic set, 512 train / 250 test records, batch 32, lr 0.02,
            latency at batch 1 and 8, ResNet18 only. On CUDA with deterministic algorithms, so that the
            languages' accuracies agree as they do on CPU (suite/thresholds.py's max_gap).
  full      (--data DIR, or --data official): all records, batch 128, lr 0.1, ResNet18 and ResNet34.
  full-cpu  (the same on a machine without a GPU): ResNet18 at the smoke sizes, so that `tox -e bench` (2 epochs,
            4 runs per language) ends in minutes, not hours (--train-limit 0 --test-limit 0 for everything).
  offline   (--data official when the official set cannot be downloaded): the smoke sizes on the synthetic set it
            falls back to, with the device's full preset's models: thresholds exist for it, so every check asserts.
Every explicit option overrides its preset value. docs/suite.md documents every option and marker.
"""

import os
from pathlib import Path

import pytest

from bench.vocab import FLAGS, INFERENCE_PATHS, LANGUAGES, MODELS, MODES
from suite import harness as H

# The default (smoke) run trains ResNet18 only, on 512 images, to keep the default tier quick; ResNet34 (twice the
# time) is in the full presets and `tox -e smoke`.
SMOKE = {"train_limit": 512, "test_limit": 250, "batch_size": 32, "lr": 0.02, "synth_train": 5000,
         "synth_test": 1000, "latency_iters": 20, "latency_batch_sizes": "1,8", "models": "resnet18"}
FULL = {"train_limit": 0, "test_limit": 0, "batch_size": 128, "lr": 0.1, "latency_iters": 100,
        "latency_batch_sizes": "1,32,128", "models": "resnet18,resnet34"}
# Without a GPU (`tox -e bench` on CPU): ResNet18 at the smoke sizes, so that 2 epochs and 4 interleaved runs per
# language fit in about 10 minutes on 2 cores (one full CIFAR-10 epoch of ResNet18 takes about 15 minutes there).
FULL_CPU = {key: SMOKE[key] for key in FULL}
# The tests are collected before a fixture prepares the official set, so whether its download works must not
# change what is collected: the fallback keeps the full preset's models and latency batch sizes.
OFFLINE = {"cpu": {**SMOKE, **FULL_CPU}, "cuda": {**SMOKE, "models": FULL["models"],
                                                  "latency_batch_sizes": FULL["latency_batch_sizes"]}}
OFFICIAL = "official"  # --data official: bench.data's default folder (downloaded on first use)
# pytest-benchmark turns itself off under pytest-xdist correctly from this version on.
MIN_PYTEST_BENCHMARK = (5, 2, 2)


def split(text):
    return [x for x in text.split(",") if x]


def usage(msg):
    raise pytest.UsageError(f"torch-api-bench: {msg}")


def cuda_available():
    import torch

    return torch.cuda.is_available()


def positive_ints(name, text, allow_empty=False):
    try:
        values = [int(x) for x in split(text)]
    except ValueError:
        values = None
    if values is None or (not values and not allow_empty) or any(v < 1 for v in values):
        usage(f"--{name} must be comma-separated positive integers, got {text!r}")
    return values


class RunConfig:
    """The validated suite options, with the preset applied. Pure: building one reads no file, downloads nothing
    and asks torch nothing. `opt(name)` gives an option's value, `cuda` whether a GPU is there; with --data
    official, `official` is the folder a fixture prepared and `why_not_official` why it is not the official set
    (None: it is, or it is not prepared yet)."""

    def __init__(self, opt, cuda, official=None, why_not_official=None):
        self.opt, self.cuda = opt, cuda
        self.device = opt("device")
        self.data = opt("data")
        # Absolute: the A/B gate's baseline side runs its trainers from another folder.
        self.data_dir = official if self.data == OFFICIAL else Path(os.path.abspath(self.data)) if self.data else None
        self.why_not_official = why_not_official
        on_cpu = self.device == "cpu" or (self.device == "auto" and not cuda)
        if not self.data:
            self.preset, preset = "smoke", SMOKE
        elif why_not_official:
            self.preset, preset = "offline", OFFLINE["cpu" if on_cpu else "cuda"]
        else:
            self.preset, preset = ("full-cpu", FULL_CPU) if on_cpu else ("full", FULL)
        pick = lambda name: preset[name] if opt(name) is None else opt(name)  # noqa: E731
        self.epochs = opt("epochs")
        self.train_limit, self.test_limit = pick("train_limit"), pick("test_limit")
        self.batch_size, self.lr = pick("batch_size"), pick("lr")
        self.latency_iters, self.latency_batch_sizes = pick("latency_iters"), pick("latency_batch_sizes")
        self.models, self.langs, self.modes = split(pick("models")), split(opt("langs")), split(opt("modes"))
        self.inference_paths = split(opt("inference_paths"))
        self.concurrency, self.concurrency_iters = opt("concurrency"), opt("concurrency_iters")
        self.world_sizes = opt("world_sizes")  # torchrun jobs of the data-parallel benchmark (suite/dist.py)
        self.threads, self.workers, self.seed = opt("threads"), opt("workers"), opt("seed")
        self.warmup_steps = opt("warmup_steps")
        self.trace_steps = opt("trace_steps")
        self.repeats = opt("repeats")
        # Smoke-sized runs on CUDA: deterministic algorithms, so the two languages' 32 steps stay in lockstep
        # as on CPU; without, atomics and autotuned algorithms drift the runs apart by more than noise.
        self.deterministic = self.preset in ("smoke", "offline") and not on_cpu
        self.validate()

    def with_official(self, folder, why_not_official):
        """This configuration once the official set is prepared (offline: the synthetic set, the offline preset)."""
        return RunConfig(self.opt, self.cuda, Path(folder), why_not_official)

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
                    usage(str(err))
        for option, values, known in [("models", self.models, tuple(MODELS)), ("langs", self.langs, LANGUAGES),
                                      ("modes", self.modes, tuple(MODES)),
                                      ("inference-paths", self.inference_paths, INFERENCE_PATHS)]:
            bad = [v for v in values if v not in known]
            if bad or not values or len(set(values)) != len(values):
                usage(f"--{option}: unknown, repeated or no value(s) {bad or values}; choose from {', '.join(known)}")
        if self.device == "cuda" and not self.cuda:
            usage("--device cuda was requested but CUDA is not available on this machine")
        if self.repeats < 1:
            usage(f"--repeats must be 1 or more, got {self.repeats}")

    def data_line(self):
        """What data the trainers read; offline, one loud line that the synthetic set replaced the official."""
        if self.why_not_official:
            return (f"DATA: the SYNTHETIC set {self.data_dir} REPLACES the official CIFAR-10 "
                    f"({self.why_not_official}); results say dataset kind 'synthetic', and the "
                    f"'{self.preset}' preset's sizes apply")
        if self.data == OFFICIAL and self.data_dir is None:
            return "data: the official CIFAR-10, prepared by the first test that needs it (downloaded to the cache " \
                   "on first use; offline, the synthetic set, said here loudly)"
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
    def resolved_device(self):
        """cpu or cuda: the device "auto" picks here."""
        return self.device if self.device != "auto" else ("cuda" if self.cuda else "cpu")

    @property
    def latency_sizes(self):
        return positive_ints("latency-batch-sizes", self.latency_batch_sizes)

    @property
    def concurrency_counts(self):
        return positive_ints("concurrency", self.concurrency, allow_empty=True)

    @property
    def world_size_counts(self):
        return positive_ints("world-sizes", self.world_sizes, allow_empty=True)

    def data_identity(self):
        """The data by content (kind and SHA-256 of its files, bench.data.dataset_identity), not by path: a baseline
        made from the same files in another folder, or on another runner, pairs with this run. Computed once, on
        first use (it reads the files)."""
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

    def trainer_args(self, model, data_dir, mode="default", repeat=1, trace_dir=None, aoti_dir=None):
        """Both trainers' flags for one run; `aoti_dir` (the mode's AOTInductor packages) is needed with the aoti
        path (suite.plugin.runs builds it)."""
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
        if aoti_dir is not None:
            args += ["--aoti-dir", str(aoti_dir)]
        return args + list(MODES[mode])


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark's, which compares stored runs with this configuration
def pytest_configure(config):
    from importlib.metadata import version

    from suite.plugin import hooks

    found = tuple(int(p) for p in version("pytest-benchmark").split(".")[:3] if p.isdigit())
    if found < MIN_PYTEST_BENCHMARK:
        usage(f"pytest-benchmark >= {'.'.join(map(str, MIN_PYTEST_BENCHMARK))} is required "
              f"(it turns itself off under xdist correctly), found {version('pytest-benchmark')}")
    _pin_xdist_worker_to_gpu()  # before anything asks torch about CUDA, which reads the variable once
    opt = config.getoption
    data = opt("data")
    if data and data != OFFICIAL and not Path(data).is_dir():
        usage(f"--data folder not found: {data}")
    config.bench_run = RunConfig(opt, opt("device") != "cpu" and cuda_available())
    hooks.configure_session(config)


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
    """The [model x language x mode] matrix of the trainer tests, and the latency/concurrency/world-size points."""
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
        metafunc.parametrize("world_size", cfg.world_size_counts or [None],
                             ids=lambda w: f"x{w}" if w else "not-requested")
    if "concurrency_n" in metafunc.fixturenames:
        # No thread counts requested: one parameter that skips with the reason, so nothing passes silently.
        metafunc.parametrize("concurrency_n", cfg.concurrency_counts or [None],
                             ids=lambda n: f"x{n}" if n else "not-requested")
