"""pytest-benchmark stores and compares the numbers measured inside the trainers.

The trainers time themselves (device-synchronized epochs, per-sample latencies); pytest-benchmark's
subprocess wall time would include interpreter start-up, data loading and the C++ binary's load. So each
test replays the trainer's own samples through pytest-benchmark's public `pedantic` API with a replay
timer: round i lasts exactly sample i. Compare, save and the regression gate then work on those numbers.
Groups are one per (model, metric[, mode]) so that Python and C++ sit side by side in each table. With
--repeats N every run's samples are stored, each with the run it came from (extra_info.sample_runs), and the
suite's configuration (extra_info.suite_config): the gate (suite/gate.py) and --benchmark-compare pair on it.
What each test stores per run is defined once, in suite/metrics.py.
"""

import pytest

from suite import dist as D
from suite.benchmark_compat import raw_samples
from suite.metrics import METRICS, concurrency_entries, hooks_set_in, latency_entries, steady_epochs


class ReplayTimer:
    """A clock for pedantic(): each (start, end) pair of reads is 0.0 and then the next recorded sample."""

    def __init__(self):
        self.samples = []
        self._started = False

    def load(self, samples_seconds):
        self.samples = list(samples_seconds)
        self._started = False

    def __call__(self):
        if not self._started:
            self._started = True
            return 0.0
        self._started = False
        return self.samples.pop(0)


REPLAY = ReplayTimer()


def replay(benchmark, samples_seconds):
    REPLAY.load(samples_seconds)
    benchmark.pedantic(lambda: None, rounds=len(samples_seconds), iterations=1, warmup_rounds=0)
    recorded = raw_samples(benchmark)
    assert recorded is None or recorded == list(samples_seconds)  # None: disabled (xdist, --benchmark-disable)


def group(model, metric, mode):
    return f"{model} {metric}" + ("" if mode == "default" else f" [{mode}]")


def common_info(docs, run_config):
    """What the stored benchmark says about its runs: their configuration (which the gate and --benchmark-compare
    pair on), and per run the results that give the numbers meaning."""
    doc = docs[0]
    return {"language": doc["language"], "model": doc["model"], "device": doc["device"]["name"],
            "dataset": doc["dataset"], "config": doc["config"], "backend": doc["backend"],
            "torch_version": doc["torch_version"], "suite_config": run_config.identity(),
            "final": [d["final"] for d in docs],
            # a run with a trainer test hook set is no measurement: the gate marks it (suite.gate.hooked_note)
            "test_hooks": hooks_set_in(docs)}


def replay_runs(benchmark, test, docs, params):
    """Store every run's samples of this test's metric (suite/metrics.py), and which run (repeat) each came from:
    the gate's statistics are over runs."""
    samples = METRICS[test].samples(docs, params)
    benchmark.extra_info["sample_runs"] = samples.sample_runs()
    replay(benchmark, samples.flat())


@pytest.mark.benchmark(timer=REPLAY, disable_gc=False, warmup=False)
def test_epoch_time(benchmark, trainer_results, run_config, model, lang, mode):
    """One round per steady-state epoch (epoch 2 on) of every run: its device-synchronized training time."""
    docs = trainer_results(model, lang, mode)
    if run_config.epochs < 2:
        pytest.skip("no steady-state epoch with --epochs 1 (epoch 1 is test_first_epoch); use --epochs 2 or more")
    benchmark.group = group(model, "train epoch (steady state)", mode)
    benchmark.extra_info.update(common_info(docs, run_config))
    for key in ("images_per_second", "train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        benchmark.extra_info[key] = [e[key] for doc in docs for e in steady_epochs(doc)]
    replay_runs(benchmark, "test_epoch_time", docs, {})


@pytest.mark.benchmark(timer=REPLAY, disable_gc=False, warmup=False)
def test_first_epoch(benchmark, trainer_results, run_config, model, lang, mode):
    """One round per run: epoch 1's training time."""
    docs = trainer_results(model, lang, mode)
    benchmark.group = group(model, "train epoch 1", mode)
    benchmark.extra_info.update(common_info(docs, run_config))
    replay_runs(benchmark, "test_first_epoch", docs, {})


@pytest.mark.benchmark(timer=REPLAY, disable_gc=False, warmup=False)
def test_startup(benchmark, trainer_results, run_config, model, lang, mode):
    """One round per run: process start to the first training step (interpreter or library load, imports, data,
    model and optimizer built)."""
    docs = trainer_results(model, lang, mode)
    if any(doc["startup_seconds"] is None for doc in docs):
        pytest.skip(f"{lang}: start-up not measured (no /proc/self/stat on this system)")
    benchmark.group = group(model, "start-up", mode)
    benchmark.extra_info.update(common_info(docs, run_config))
    replay_runs(benchmark, "test_startup", docs, {})


@pytest.mark.benchmark(timer=REPLAY, disable_gc=False, warmup=False)
def test_latency(benchmark, trainer_results, run_config, model, lang, mode, latency_path, latency_bs):
    """One round per latency sample (forward + sync) of this inference path at this batch size, every run."""
    docs = trainer_results(model, lang, mode)
    why = next((u["reason"] for u in docs[0]["unavailable"] if u["feature"] == f"inference path {latency_path}"),
               None)
    if why:
        pytest.skip(f"{lang}: inference path {latency_path} unavailable: {why}")
    lats = latency_entries(docs, latency_path, latency_bs)
    benchmark.group = group(model, f"latency {latency_path} bs={latency_bs}", mode)
    benchmark.extra_info.update(common_info(docs, run_config))
    benchmark.extra_info.update({k: [lat[k] for lat in lats] for k in ("median_ms", "p90_ms", "p99_ms", "mean_ms")})
    replay_runs(benchmark, "test_latency", docs, {"latency_path": latency_path, "latency_bs": latency_bs})


@pytest.mark.benchmark(timer=REPLAY, disable_gc=False, warmup=False)
def test_concurrency(benchmark, trainer_results, run_config, model, lang, mode, concurrency_n):
    """One round per batch-1 request made while `concurrency_n` threads share the model, every run."""
    if concurrency_n is None:
        pytest.skip("no --concurrency thread counts requested")
    docs = trainer_results(model, lang, mode)
    concs = concurrency_entries(docs, concurrency_n)
    benchmark.group = group(model, f"concurrent bs=1 x{concurrency_n} threads", mode)
    benchmark.extra_info.update(common_info(docs, run_config))
    benchmark.extra_info.update({k: [c[k] for c in concs]
                                 for k in ("threads", "requests", "seconds", "images_per_second")})
    replay_runs(benchmark, "test_concurrency", docs, {"concurrency_n": concurrency_n})


# Data-parallel (--world-sizes; suite/dist.py, docs/distributed.md) --------------------------------------------------

@pytest.mark.benchmark(timer=REPLAY, disable_gc=False, warmup=False)
def test_dist_step(benchmark, dist_results, run_config, model, lang, mode, world_size):
    """One round per synced training step of every run of a `world_size`-rank torchrun job: the job's step time, the
    slowest rank's (the report's scaling section turns them into images/s and efficiency)."""
    if world_size is None:
        pytest.skip("no --world-sizes requested (e.g. --world-sizes 1,2)")
    docs = dist_results(model, lang, mode, world_size)
    benchmark.group = group(model, f"data-parallel step x{world_size} ranks", mode)
    benchmark.extra_info.update(common_info(docs, run_config))
    benchmark.extra_info["exposed_comm_s"] = [D.exposed_comm_seconds(doc["distributed"]) for doc in docs]
    replay_runs(benchmark, "test_dist_step", docs, {})
