"""What a language's runs measured, as RunSamples (suite/report/samples.py), from its results documents (one per
run): one definition for the report's tables and ratios, the benchmarks of tests/test_benchmarks.py that store
the samples, the gate that judges them (suite/gate.py: each benchmark's threshold group) and the interleaved A/B
gate, which builds its baseline from the other tree's results documents with these same functions.

A run that lacks a quantity (start-up in documents before schema 4, a latency point it did not measure) gives
an empty run, so `complete` tells whether every run measured it.
"""

from collections.abc import Callable
from dataclasses import dataclass

from suite.dist import synced_steps
from suite.report.samples import RunSamples, steady_epochs


def steady_epoch_seconds(docs):
    return RunSamples([[e["train_seconds"] for e in steady_epochs(doc)] for doc in docs], "s")


def steady_images_per_second(docs):
    return RunSamples([[e["images_per_second"] for e in steady_epochs(doc)] for doc in docs], "images/s")


def steady_step_ms(docs):
    """A steady epoch's time per training step: its train_seconds over its steps (global batches per rank)."""
    return RunSamples([[e["train_seconds"] * 1e3 / steps_per_epoch(doc) for e in steady_epochs(doc)] for doc in docs],
                      "ms")


def steps_per_epoch(doc):
    from bench.data import global_batches

    world_size = (doc.get("distributed") or {}).get("world_size", 1)
    return len(global_batches(doc["dataset"]["train_records"], doc["config"]["batch_size"], world_size))


def peak_rss_mib(docs):
    """The process's peak resident memory (the interpreter's share included: it is the Python API's); None before
    schema 5."""
    return RunSamples.one_per_run([doc.get("peak_rss_bytes") and doc["peak_rss_bytes"] / 2**20 for doc in docs], "MiB")


def peak_cuda_mib(docs):
    """CUDA: the training window's peak of allocated device memory; None on CPU."""
    return RunSamples.one_per_run([doc.get("peak_memory_bytes") and doc["peak_memory_bytes"] / 2**20 for doc in docs],
                                  "MiB")


def first_epoch_seconds(docs):
    return RunSamples([[e["train_seconds"] for e in doc["epochs"][:1]] for doc in docs], "s")


def startup_seconds(docs):
    """Process start to the first training step (or inference, with --eval-only); None before schema 4."""
    return RunSamples.one_per_run([doc.get("startup_seconds") for doc in docs], "s")


def latency_entries(docs, path, batch_size):
    return [next(x for x in doc["latency"] if x["path"] == path and x["batch_size"] == batch_size) for doc in docs]


def latency_ms(docs, path, batch_size):
    """Every latency sample (one forward and a synchronize) of one inference path at one batch size."""
    return RunSamples([[s for x in doc["latency"] if (x["path"], x["batch_size"]) == (path, batch_size)
                        for s in x["samples_ms"]] for doc in docs], "ms")


def concurrency_entries(docs, threads):
    return [next(c for c in doc["concurrency"] if c["threads"] == threads) for doc in docs]


def concurrency_request_ms(docs, threads):
    """Every batch-1 request's latency while `threads` threads share the model."""
    return RunSamples([[s for c in doc["concurrency"] if c["threads"] == threads for s in c["samples_ms"]]
                       for doc in docs], "ms")


def concurrency_images_per_second(docs, threads):
    """The throughput of all `threads` threads together: one value per run."""
    return RunSamples([[c["images_per_second"] for c in doc["concurrency"] if c["threads"] == threads]
                       for doc in docs], "images/s")


def dist_step_seconds(docs):
    """A torchrun job's synced training steps, each the slowest rank's time (suite/dist.py); KeyError for a
    single-process run's document."""
    return RunSamples([synced_steps(doc.get("distributed") or {}) for doc in docs], "s")


@dataclass(frozen=True)
class Metric:
    group: str  # the gate's threshold group (suite/gate.toml)
    samples: Callable  # (docs, the test's parameters) -> RunSamples in seconds, pytest-benchmark's unit


# tests/test_benchmarks.py's test functions
METRICS = {
    "test_epoch_time": Metric("epoch_time", lambda docs, params: steady_epoch_seconds(docs)),
    "test_first_epoch": Metric("first_epoch", lambda docs, params: first_epoch_seconds(docs)),
    "test_startup": Metric("startup", lambda docs, params: startup_seconds(docs)),
    "test_latency": Metric("latency", lambda docs, params: latency_ms(
        docs, params["latency_path"], params["latency_bs"]).to("s")),
    "test_concurrency": Metric("throughput", lambda docs, params: concurrency_request_ms(
        docs, params["concurrency_n"]).to("s")),
    "test_dist_step": Metric("dist_step", lambda docs, params: dist_step_seconds(docs)),
}


def test_function(benchmark_name):
    """'test_latency[resnet18-python-default-eager-bs1]' -> 'test_latency'."""
    return benchmark_name.split("[")[0]


def hooks_set_in(docs):
    """{variable: value} of the trainer test hooks any of these runs had set (each document's process section;
    none is recorded before schema version 6): a run with one is no measurement."""
    return {name: value for doc in docs for name, value in doc.get("process", {}).get("test_hooks", {}).items()}
