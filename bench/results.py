"""The results document: what a run measured, its statistics, and its atomic writing. Twin of cpp/results.cpp.

The schema is schema/results.schema.json; suite/schema.py validates documents against it. No torch here: the
suite's validator and report import this module.
"""

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.vocab import FLAGS, MOMENTUM, NESTEROV, SCHEDULE, TRACE_FILES, WEIGHT_DECAY

SCHEMA_VERSION = 6


class ResultsError(Exception):
    """A results document cannot be written (a non-finite number, a failed write)."""


@dataclass
class EpochRecord:
    """One epoch's record, its keys in the schema's order."""

    epoch: int
    train_seconds: float
    eval_seconds: float
    images_per_second: float
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    lr: float


@dataclass
class Training:
    """The timed epochs: one record per epoch, every step's loss, the whole window and its peak memory."""

    epochs: list
    step_losses: list
    total_seconds: float
    peak_memory_bytes: int | None


@dataclass
class Inference:
    """Latency per path and batch size, the paths this run could not measure, concurrent inference."""

    latency: list
    unavailable: list
    concurrency: list


def percentile(sorted_values, q):
    """Linear interpolation between the closest ranks (numpy's default), written out for the C++ twin."""
    n = len(sorted_values)
    pos = q / 100 * (n - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize_ms(samples_ms):
    s = sorted(samples_ms)
    return {"median_ms": percentile(s, 50), "p90_ms": percentile(s, 90), "p99_ms": percentile(s, 99),
            "mean_ms": sum(s) / len(s)}


def empty_sample_entry(samples_us):
    """The results' record of the clock's own cost: every empty sample (µs) and their median."""
    return {"samples_us": samples_us, "median_us": percentile(sorted(samples_us), 50)}


def final_json(train_loss, train_accuracy, test_loss, test_accuracy):
    """The final metrics: the last epoch's, or with --eval-only one evaluation's (no training ones: None)."""
    return {"train_loss": train_loss, "train_accuracy": train_accuracy, "test_loss": test_loss,
            "test_accuracy": test_accuracy}


def run_config(args):
    """The run's configuration: every flag the table records in config (vocab.FLAGS' config_key), in its order,
    then the recipe's constants."""
    config = {flag.config_key: getattr(args, flag.dest) for flag in FLAGS if flag.config_key}
    return config | {"momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY, "nesterov": NESTEROV, "schedule": SCHEDULE}


def trace_files(args):
    """The Chrome traces --trace-steps writes, by what they hold (written and recorded by these paths: DIR joined
    with the name as given, the same string in both languages); None without it."""
    if not args.trace_steps:
        return None
    return {"train": None if args.eval_only else os.path.join(args.trace_dir, TRACE_FILES["train"]),
            "inference": os.path.join(args.trace_dir, TRACE_FILES["inference"])}


def results_document(args, facts, param_count, dataset, startup_seconds, dataset_hash_seconds, warmup_seconds,
                     empty_samples, training, final, inference, peak_rss_bytes, process):
    """The whole document, in the schema's order. `facts` is runtime.run_facts(); `startup_seconds` is
    runtime.seconds_since_process_start() once the model is ready (before the first training step, or the
    first inference with --eval-only); `dataset_hash_seconds` the dataset's SHA-256, timed apart; `final` is
    final_json(...); `peak_rss_bytes` runtime.peak_rss_bytes(); `process` the run's ProcessRecord.section()."""
    doc = {
        "schema_version": SCHEMA_VERSION, "complete": True, "language": "python", "model": args.model,
        "param_count": param_count, "torch_version": facts["torch_version"], "cuda_version": facts["cuda_version"],
        "cudnn_version": facts["cudnn_version"], "device": facts["device"], "backend": facts["backend"],
        "dataset": dataset, "config": run_config(args), "precision_label": facts["precision_label"],
        "startup_seconds": startup_seconds, "dataset_hash_seconds": dataset_hash_seconds,
        "warmup_seconds": warmup_seconds, "empty_sample_us": empty_sample_entry(empty_samples),
        "epochs": [asdict(e) for e in training.epochs], "total_seconds": training.total_seconds, "final": final,
        "latency": inference.latency, "concurrency": inference.concurrency, "unavailable": inference.unavailable,
        "peak_memory_bytes": training.peak_memory_bytes, "peak_rss_bytes": peak_rss_bytes,
        "traces": trace_files(args), "process": process,
    }
    if args.record_step_losses:
        doc["step_losses"] = training.step_losses
    return doc


# The temporary file being written, if any: a signal handler removes it before the process exits.
pending_tmp = None


def write_results_atomic(doc, path):
    """Write to a temporary file beside `path`, then rename: readers never see half a document.

    Raises ResultsError "cannot write results to PATH: ..." for a non-finite number (JSON has none; the twin
    refuses it too) and for a failed write; neither leaves a file behind.
    """
    global pending_tmp
    try:
        text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    except ValueError:
        raise ResultsError(f"cannot write results to {path}: a non-finite number in the results") from None
    target = Path(path)
    tmp = target.with_name(f"{target.name}.tmp.{os.getpid()}")
    pending_tmp = tmp
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise ResultsError(f"cannot write results to {path}: {err.strerror or err}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        pending_tmp = None
