"""pytest-benchmark stores and compares the numbers measured inside the trainers.

The trainers time themselves (device-synchronized epochs, per-sample latencies); pytest-benchmark's
subprocess wall time would include interpreter start-up, data loading and the C++ binary's load. So each
test replays the trainer's own samples through pytest-benchmark's public `pedantic` API with a replay
timer: round i lasts exactly sample i. Compare, save and the regression gate then work on those numbers.
Groups are one per (model, metric[, mode]) so that Python and C++ sit side by side in each table.
"""

import pytest

from suite.benchmark_compat import raw_samples


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


def common_info(doc):
    return {"language": doc["language"], "model": doc["model"], "device": doc["device"]["name"],
            "dataset": doc["dataset"], "config": doc["config"], "backend": doc["backend"], "final": doc["final"],
            "torch_version": doc["torch_version"]}


@pytest.mark.benchmark(timer=REPLAY, disable_gc=False, warmup=False)
def test_epoch_time(benchmark, trainer_results, model, lang, mode):
    """One round per epoch: its device-synchronized training time."""
    doc = trainer_results(model, lang, mode)
    benchmark.group = group(model, "train epoch", mode)
    benchmark.extra_info.update(common_info(doc))
    for key in ("images_per_second", "train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        benchmark.extra_info[key] = [e[key] for e in doc["epochs"]]
    replay(benchmark, [e["train_seconds"] for e in doc["epochs"]])


@pytest.mark.benchmark(timer=REPLAY, disable_gc=False, warmup=False)
def test_latency(benchmark, trainer_results, model, lang, mode, latency_path, latency_bs):
    """One round per latency sample (forward + sync) of this inference path at this batch size."""
    doc = trainer_results(model, lang, mode)
    why = next((u["reason"] for u in doc["unavailable"] if u["feature"] == f"inference path {latency_path}"), None)
    if why:
        pytest.skip(f"{lang}: inference path {latency_path} unavailable: {why}")
    lat = next(x for x in doc["latency"] if x["path"] == latency_path and x["batch_size"] == latency_bs)
    benchmark.group = group(model, f"latency {latency_path} bs={latency_bs}", mode)
    benchmark.extra_info.update(common_info(doc))
    benchmark.extra_info.update({k: lat[k] for k in ("median_ms", "p90_ms", "p99_ms", "mean_ms")})
    replay(benchmark, [ms / 1000 for ms in lat["samples_ms"]])


@pytest.mark.benchmark(timer=REPLAY, disable_gc=False, warmup=False)
def test_concurrency(benchmark, trainer_results, model, lang, mode, concurrency_n):
    """One round per batch-1 request made while `concurrency_n` threads share the model."""
    if concurrency_n is None:
        pytest.skip("no --concurrency thread counts requested")
    doc = trainer_results(model, lang, mode)
    conc = next(c for c in doc["concurrency"] if c["threads"] == concurrency_n)
    benchmark.group = group(model, f"concurrent bs=1 x{concurrency_n} threads", mode)
    benchmark.extra_info.update(common_info(doc))
    benchmark.extra_info.update({k: conc[k] for k in ("threads", "requests", "seconds", "images_per_second")})
    replay(benchmark, [ms / 1000 for ms in conc["samples_ms"]])
