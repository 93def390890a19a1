"""The one validator of results documents, used by the tests, the report and the gate.

It checks a document against schema/results.schema.json, then the cross-field facts a schema cannot say.
"""

import json
import math

from bench.results import percentile, summarize_ms
from bench.vocab import DATA_PIPELINES, INFERENCE_PATHS, LANGUAGES, OPTIMIZER_IMPLS, PRECISIONS

# Version 2 (before warm-up, empty samples and per-path peak memory) is still read: the committed CPU results
# in docs/results/ are version 2. The report treats its missing fields as unknown.
READABLE_VERSIONS = (2, 3)
EPOCH_KEYS = ("epoch", "train_seconds", "eval_seconds", "images_per_second", "train_loss", "train_accuracy",
              "test_loss", "test_accuracy", "lr")
LATENCY_STATS = ("median_ms", "p90_ms", "p99_ms", "mean_ms")
# The modes' allowed values (docs/twins.md, "Modes"); bench/train.py and cpp/train.cpp accept exactly these.
MODE_CHOICES = {"precision": PRECISIONS, "optimizer_impl": OPTIMIZER_IMPLS, "data_pipeline": DATA_PIPELINES}




class ResultsError(Exception):
    """A results document is missing, incomplete or does not follow the schema."""


def _require(cond, where, what):
    if not cond:
        raise ResultsError(f"{where}: {what}")


def _is_num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_samples(entry, where, name):
    """samples_ms are positive numbers and the stored statistics are the ones they give."""
    samples = entry.get("samples_ms")
    _require(isinstance(samples, list) and samples and all(_is_num(s) and s > 0 for s in samples), where,
             f"{name}.samples_ms empty or not positive numbers")
    for key, value in summarize_ms(samples).items():
        _require(_is_num(entry.get(key)) and math.isclose(entry[key], value, rel_tol=1e-9, abs_tol=1e-12),
                 where, f"{name}.{key} is {entry.get(key)}, its samples give {value}")


def validate_results(doc, where="results"):
    """Raise ResultsError naming the first problem; return doc. Checks types and internal consistency."""
    _require(isinstance(doc, dict), where, "not a JSON object")
    _require(doc.get("schema_version") in READABLE_VERSIONS, where,
             f"schema_version is not one of {READABLE_VERSIONS}")
    _require(doc.get("complete") is True, where, "run is marked incomplete")
    _require(doc.get("language") in LANGUAGES, where, f"language must be one of {LANGUAGES}")
    for key, typ in [("model", str), ("param_count", int), ("torch_version", str), ("device", dict),
                     ("backend", dict), ("dataset", dict), ("config", dict), ("epochs", list),
                     ("final", dict), ("latency", list)]:
        _require(isinstance(doc.get(key), typ), where, f"{key} missing or not {typ.__name__}")
    _require(doc["device"].get("type") in ("cpu", "cuda"), where, "device.type must be cpu or cuda")
    _require(isinstance(doc["device"].get("name"), str), where, "device.name missing")
    _require(isinstance(doc["device"].get("threads"), int), where, "device.threads missing")
    for flag in ("cudnn_benchmark", "cudnn_allow_tf32", "matmul_allow_tf32", "deterministic"):
        _require(isinstance(doc["backend"].get(flag), bool), where, f"backend.{flag} missing")
    ds = doc["dataset"]
    _require(ds.get("kind") in ("official", "subset", "synthetic"), where, "dataset.kind invalid")
    _require(isinstance(ds.get("sha256"), str) and len(ds["sha256"]) == 64, where, "dataset.sha256 invalid")
    for key in ("train_records", "test_records"):
        _require(isinstance(ds.get(key), int) and ds[key] >= 0, where, f"dataset.{key} invalid")
    cfg = doc["config"]
    _require(cfg.get("model") == doc["model"], where, "config.model differs from model")
    for key in ("epochs", "batch_size", "seed", "train_limit", "test_limit", "threads", "latency_iters"):
        _require(isinstance(cfg.get(key), int), where, f"config.{key} missing")
    _require(_is_num(cfg.get("lr")), where, "config.lr missing")
    for key, choices in MODE_CHOICES.items():
        _require(cfg.get(key) in choices, where, f"config.{key} must be one of {choices}")
    for key in ("channels_last", "cudnn_benchmark"):
        _require(isinstance(cfg.get(key), bool), where, f"config.{key} missing or not a bool")
    _require(isinstance(cfg.get("workers"), int) and cfg["workers"] >= 0, where, "config.workers invalid")
    paths = cfg.get("inference_paths")
    _require(isinstance(paths, list) and paths and all(p in INFERENCE_PATHS for p in paths), where,
             f"config.inference_paths must be a non-empty list of {INFERENCE_PATHS}")
    _require(isinstance(cfg.get("concurrency"), list) and all(isinstance(n, int) and n > 0 for n in cfg["concurrency"]),
             where, "config.concurrency must be a list of positive ints")
    _require(isinstance(cfg.get("concurrency_iters"), int) and cfg["concurrency_iters"] > 0, where,
             "config.concurrency_iters invalid")
    expected_epochs = 0 if cfg.get("eval_only") else cfg["epochs"]
    _require(len(doc["epochs"]) == expected_epochs, where,
             f"{len(doc['epochs'])} epoch records for {expected_epochs} configured epochs")
    for i, ep in enumerate(doc["epochs"]):
        for key in EPOCH_KEYS:
            _require(_is_num(ep.get(key)), where, f"epochs[{i}].{key} missing or not a finite number")
        _require(ep["epoch"] == i + 1, where, f"epochs[{i}].epoch is {ep['epoch']}")
        _require(ep["train_seconds"] > 0 and ep["eval_seconds"] > 0, where, f"epochs[{i}] has a zero time")
        for key in ("train_accuracy", "test_accuracy"):
            _require(0 <= ep[key] <= 100, where, f"epochs[{i}].{key} outside 0..100")
    _require(_is_num(doc.get("total_seconds")), where, "total_seconds missing")
    fin = doc["final"]
    for key in ("test_loss", "test_accuracy"):
        _require(_is_num(fin.get(key)), where, f"final.{key} missing")
    if doc["epochs"]:
        last = doc["epochs"][-1]
        for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            _require(fin.get(key) == last[key], where, f"final.{key} differs from the last epoch")
    _require(isinstance(doc.get("unavailable"), list), where, "unavailable missing or not a list")
    for i, item in enumerate(doc["unavailable"]):
        ok = isinstance(item, dict) and isinstance(item.get("feature"), str) and isinstance(item.get("reason"), str)
        _require(ok, where, f"unavailable[{i}] needs a feature and a reason")
    seen = set()
    for i, lat in enumerate(doc["latency"]):
        _require(lat.get("path") in cfg["inference_paths"], where, f"latency[{i}].path is not a configured path")
        _require(isinstance(lat.get("batch_size"), int) and lat["batch_size"] > 0, where,
                 f"latency[{i}].batch_size invalid")
        _require((lat["path"], lat["batch_size"]) not in seen, where, f"latency[{i}] repeats its path and batch size")
        seen.add((lat["path"], lat["batch_size"]))
        _check_samples(lat, where, f"latency[{i}]")
    _require(isinstance(doc.get("concurrency"), list), where, "concurrency missing or not a list")
    for i, conc in enumerate(doc["concurrency"]):
        name = f"concurrency[{i}]"
        for key in ("threads", "requests"):
            _require(isinstance(conc.get(key), int) and conc[key] > 0, where, f"{name}.{key} invalid")
        for key in ("seconds", "images_per_second"):
            _require(_is_num(conc.get(key)) and conc[key] > 0, where, f"{name}.{key} invalid")
        _require(math.isclose(conc["images_per_second"], conc["requests"] / conc["seconds"], rel_tol=1e-6), where,
                 f"{name}.images_per_second is not requests / seconds")
        _check_samples(conc, where, name)
        _require(len(conc["samples_ms"]) == conc["requests"], where, f"{name} has one sample per request")
    mem = doc.get("peak_memory_bytes")
    _require(mem is None or (isinstance(mem, int) and mem >= 0), where, "peak_memory_bytes invalid")
    if doc["schema_version"] >= 3:
        _validate_v3_fields(doc, where)
    return doc


def _validate_v3_fields(doc, where):
    """Warm-up, the clock's cost, the precision label and per-path peak memory (schema version 3)."""
    cfg = doc["config"]
    _require(isinstance(cfg.get("warmup_steps"), int) and cfg["warmup_steps"] >= 0, where,
             "config.warmup_steps invalid")
    warmup = doc.get("warmup_seconds")
    if cfg.get("eval_only") or cfg["warmup_steps"] == 0:
        _require(warmup is None, where, "warmup_seconds must be null when no warm-up ran")
    else:
        _require(_is_num(warmup) and warmup > 0, where, "warmup_seconds missing or not positive")
    _require(isinstance(doc.get("precision_label"), str) and doc["precision_label"].startswith(cfg["precision"]),
             where, "precision_label missing or not the configured precision")
    empty = doc.get("empty_sample_us")
    samples = empty.get("samples_us") if isinstance(empty, dict) else None
    _require(isinstance(samples, list) and samples and all(_is_num(s) and s >= 0 for s in samples), where,
             "empty_sample_us.samples_us empty or not non-negative numbers")
    _require(_is_num(empty.get("median_us")) and math.isclose(empty["median_us"], percentile(sorted(samples), 50)),
             where, "empty_sample_us.median_us is not the median of its samples")
    for i, lat in enumerate(doc["latency"]):
        mem = lat.get("peak_memory_bytes", "missing")
        _require(mem is None or (isinstance(mem, int) and mem >= 0), where, f"latency[{i}].peak_memory_bytes invalid")


def load_results(path):
    """Read and validate one results file; errors name the file."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ResultsError(f"{path}: cannot read results ({err})") from None
    return validate_results(doc, where=str(path))
