"""What each benchmark of tests/test_benchmarks.py measures, per run: one definition for the tests that store the
samples, the gate that judges them (suite/gate.py: each metric's threshold group) and the interleaved A/B gate,
which builds its baseline from the other tree's results documents with these same functions.

Every function takes a language's results documents (one per repeat) and returns one list of samples (seconds)
per run.
"""

from collections.abc import Callable
from dataclasses import dataclass


def steady_epochs(doc):
    """Epochs after the first: epoch 1 also pays for what only happens once (allocator growth, workers' start,
    autotuning after the warm-up), so it is a metric of its own (first_epoch)."""
    return doc["epochs"][1:]


def epoch_time(docs, params):
    return [[e["train_seconds"] for e in steady_epochs(doc)] for doc in docs]


def first_epoch(docs, params):
    return [[doc["epochs"][0]["train_seconds"]] for doc in docs]


def startup(docs, params):
    return [[doc["startup_seconds"]] for doc in docs]


def latency_entries(docs, path, batch_size):
    return [next(x for x in doc["latency"] if x["path"] == path and x["batch_size"] == batch_size) for doc in docs]


def latency(docs, params):
    return [[ms / 1000 for ms in lat["samples_ms"]]
            for lat in latency_entries(docs, params["latency_path"], params["latency_bs"])]


def concurrency_entries(docs, threads):
    return [next(c for c in doc["concurrency"] if c["threads"] == threads) for doc in docs]


def concurrency(docs, params):
    return [[ms / 1000 for ms in c["samples_ms"]] for c in concurrency_entries(docs, params["concurrency_n"])]


def dist_step(docs, params):
    """A torchrun job's synced training steps, each the slowest rank's time (suite/dist.py); KeyError for a
    single-process run's document."""
    from suite.dist import synced_steps

    return [synced_steps(doc.get("distributed") or {}) for doc in docs]


@dataclass(frozen=True)
class Metric:
    group: str  # the gate's threshold group (suite/gate.toml)
    runs: Callable  # (docs, the test's parameters) -> one list of samples per run


# tests/test_benchmarks.py's test functions
METRICS = {
    "test_epoch_time": Metric("epoch_time", epoch_time),
    "test_first_epoch": Metric("first_epoch", first_epoch),
    "test_startup": Metric("startup", startup),
    "test_latency": Metric("latency", latency),
    "test_concurrency": Metric("throughput", concurrency),
    "test_dist_step": Metric("dist_step", dist_step),
}


def test_function(benchmark_name):
    """'test_latency[resnet18-python-default-eager-bs1]' -> 'test_latency'."""
    return benchmark_name.split("[")[0]
