"""The one validator of results documents, used by the tests, the report and the gate.

schema/results.schema.json defines the document. validate_results checks a document against it with jsonschema,
then the cross-field facts a schema cannot say. Every error is one line: `<where>: <JSON path>: <what is wrong>`.
"""

import functools
import json
import math
import reprlib

import numpy as np
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import best_match

from bench.results import summarize_ms
from suite.harness import ROOT

SCHEMA_PATH = ROOT / "schema" / "results.schema.json"


class ResultsError(Exception):
    """A results document is missing, incomplete or does not follow the schema."""


def _finite_number(checker, value):
    # JSON has no NaN or infinity (RFC 8259), but Python's json module reads and writes them: they are no number.
    return Draft202012Validator.TYPE_CHECKER.is_type(value, "number") and math.isfinite(value)


ResultsValidator = validators.extend(
    Draft202012Validator, type_checker=Draft202012Validator.TYPE_CHECKER.redefine("number", _finite_number))


@functools.cache
def results_schema():
    with open(SCHEMA_PATH) as f:
        schema = json.load(f)
    ResultsValidator.check_schema(schema)
    return schema


@functools.cache
def _validator():
    return ResultsValidator(results_schema())


def _require(cond, where, path, what):
    if not cond:
        raise ResultsError(f"{where}: {path}: {what}")


def validate_results(doc, where="results"):
    """Raise ResultsError naming the first problem and where it is; return doc."""
    error = best_match(_validator().iter_errors(doc))
    if error is not None:
        # jsonschema quotes the offending value, which may be a whole list of samples: abbreviate it
        message = error.message.replace(repr(error.instance), reprlib.repr(error.instance))
        raise ResultsError(f"{where}: {error.json_path}: {message}")
    _check_cross_fields(doc, where)
    return doc


def _check_statistics(entry, where, path):
    """The stored median/p90/p99/mean are the ones the samples give."""
    for key, value in summarize_ms(entry["samples_ms"]).items():
        _require(math.isclose(entry[key], value, rel_tol=1e-9, abs_tol=1e-12), where, f"{path}.{key}",
                 f"is {entry[key]}, its samples give {value}")


def _check_cross_fields(doc, where):
    """What relates one field to another; the schema has checked every type, so fields can be read freely."""
    cfg = doc["config"]
    _require(cfg["model"] == doc["model"], where, "$.config.model",
             f"{cfg['model']!r} is not the model {doc['model']!r}")
    trained = 0 if cfg["eval_only"] else cfg["epochs"]
    _require(len(doc["epochs"]) == trained, where, "$.epochs",
             f"{len(doc['epochs'])} epoch records for {trained} configured epochs")
    for i, ep in enumerate(doc["epochs"]):
        _require(ep["epoch"] == i + 1, where, f"$.epochs[{i}].epoch", f"is {ep['epoch']}, expected {i + 1}")
    if doc["epochs"]:
        for key in results_schema()["properties"]["final"]["required"]:
            _require(doc["final"][key] == doc["epochs"][-1][key], where, f"$.final.{key}",
                     "differs from the last epoch's")
    seen = set()
    for i, lat in enumerate(doc["latency"]):
        path, point = f"$.latency[{i}]", (lat["path"], lat["batch_size"])
        _require(lat["path"] in cfg["inference_paths"], where, f"{path}.path",
                 f"{lat['path']!r} is not in config.inference_paths")
        _require(point not in seen, where, path, f"repeats path {point[0]!r} at batch size {point[1]}")
        seen.add(point)
        _check_statistics(lat, where, path)
    for i, conc in enumerate(doc["concurrency"]):
        path = f"$.concurrency[{i}]"
        _require(len(conc["samples_ms"]) == conc["requests"], where, f"{path}.requests",
                 f"is {conc['requests']}, but there are {len(conc['samples_ms'])} samples (one per request)")
        _require(math.isclose(conc["images_per_second"], conc["requests"] / conc["seconds"], rel_tol=1e-6), where,
                 f"{path}.images_per_second", "is not requests / seconds")
        _check_statistics(conc, where, path)
    if doc["schema_version"] >= 3:
        warmed_up = not cfg["eval_only"] and cfg["warmup_steps"] > 0
        _require((doc["warmup_seconds"] is not None) == warmed_up, where, "$.warmup_seconds",
                 "must be a time when a warm-up ran, and null when none did (--warmup-steps 0 or --eval-only)")
        _require(doc["precision_label"].startswith(cfg["precision"]), where, "$.precision_label",
                 f"{doc['precision_label']!r} does not start with config.precision {cfg['precision']!r}")
        empty = doc["empty_sample_us"]
        median = float(np.median(empty["samples_us"]))
        _require(math.isclose(empty["median_us"], median), where, "$.empty_sample_us.median_us",
                 f"is {empty['median_us']}, its samples give {median}")
    if doc["schema_version"] == 4:  # the first inference's start-up came with version 5
        _require(doc["startup_seconds"] is None or not cfg["eval_only"], where, "$.startup_seconds",
                 "must be null with --eval-only in schema version 4")
    if doc["schema_version"] >= 5:
        _require((doc["traces"] is None) == (cfg["trace_steps"] == 0), where, "$.traces",
                 "must be null exactly when config.trace_steps is 0")
        _require((cfg["trace_dir"] is None) == (cfg["trace_steps"] == 0), where, "$.config.trace_dir",
                 "must be given exactly when config.trace_steps is not 0")
        _require(doc["traces"] is None or (doc["traces"]["train"] is None) == cfg["eval_only"], where,
                 "$.traces.train", "must be null exactly when the run did not train (--eval-only)")
    if doc["schema_version"] >= 6:  # the timed thread's state at the start of every timed window
        windows = doc["process"]["windows"]
        for name in [f"epoch {ep['epoch']}" for ep in doc["epochs"]] + \
                [f"latency {lat['path']} bs={lat['batch_size']}" for lat in doc["latency"]]:
            _require(name in windows, where, "$.process.windows", f"has no state for the timed window {name!r}")


def load_results(path):
    """Read and validate one results file; errors name the file."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ResultsError(f"{path}: cannot read results ({err})") from None
    return validate_results(doc, where=str(path))
