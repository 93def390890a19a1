"""schema/results.schema.json and suite/schema.py: the schema's enums are the vocabulary's, every committed results
document validates, and each single breakage of a real document fails validation naming the field.

Fast: no training. Both trainers' documents are validated as the suite runs them (tests/test_trainers.py).
"""

import copy
import functools
import gc
import json

import pytest

from bench import vocab
from bench.results import SCHEMA_VERSION
from suite.harness import ROOT
from suite.schema import ResultsError, load_results, results_schema, validate_results

# Real documents to break: schema version 3 and version 2 (with latency and concurrency); the trainers write version 6.
V3 = ROOT / "docs" / "results" / "warmup-cpu" / "python-resnet18-warmup3.json"
V2 = ROOT / "docs" / "report-example" / "results" / "python-resnet18-default.json"
# Every committed trainer results document; not the report's own report.json, nor the sweep's sweep.json
NOT_RESULTS = {"report.json", "sweep.json"}
COMMITTED = sorted(p for p in (ROOT / "docs").rglob("*.json") if p.name not in NOT_RESULTS)


def v4():
    """The V3 document as version 4: the start-up time and the repeat's number."""
    doc = json.loads(V3.read_text())
    doc.update(schema_version=4, startup_seconds=2.5)
    doc["config"]["repeat"] = 1
    return doc


def eval_only(doc):
    """`doc` as an --eval-only run: no epochs, no training metrics, no warm-up."""
    doc["config"]["eval_only"] = True
    doc.update(epochs=[], warmup_seconds=None, peak_memory_bytes=None)
    doc["final"].update(train_loss=None, train_accuracy=None)
    return doc


def v4_eval_only():
    """v4() as an --eval-only run: no start-up time either (version 5 times it to the first inference)."""
    return eval_only(v4()) | {"startup_seconds": None}


def v5():
    """The document as the trainers write it now (no version 5 document is committed): v4 with peak resident
    memory and traces."""
    doc = v4()
    doc.update(schema_version=5, peak_rss_bytes=2 * 2**30,
               traces={"train": "t/train.json", "inference": "t/inference.json"})
    doc["config"].update(trace_steps=3, trace_dir="t")
    return doc


def v5_eval_only():
    """v5() as an --eval-only run: start-up to the first inference, no training trace."""
    doc = eval_only(v5())
    doc["traces"]["train"] = None
    return doc


@functools.cache
def process_section(windows):
    """This test process's own process section (bench/process.py), with the timed windows `windows`."""
    from bench.process import ProcessRecord

    record = ProcessRecord(frozenset())
    gc.callbacks.remove(record.on_gc)  # no run here: its windows are opened only to be recorded
    for name in windows:
        with record.window("epoch", name):
            pass
    return json.dumps(record.section())


def v6():
    """The document as the trainers write it now (no version 6 document is committed): v5 with the dataset's hash
    timed apart and the process section."""
    doc = v5()
    windows = tuple(f"epoch {ep['epoch']}" for ep in doc["epochs"])
    doc.update(schema_version=6, dataset_hash_seconds=0.25, process=json.loads(process_section(windows)))
    return doc


def enums(node, pointer="#"):
    """{JSON pointer: enum} of every enum in the schema."""
    found = {pointer: node["enum"]} if isinstance(node, dict) and "enum" in node else {}
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        found.update(enums(child, f"{pointer}/{key}"))
    return found


def test_the_schema_enums_are_the_vocabulary():
    """Every enum in the schema is one of bench.vocab's tuples (or the readable schema versions), in its order."""
    config = "#/properties/config/properties"
    expected = {
        "#/properties/schema_version": None,  # below
        "#/properties/language": vocab.LANGUAGES,
        "#/properties/model": tuple(vocab.MODELS),
        "#/properties/device/properties/type": tuple(d for d in vocab.DEVICES if d != "auto"),  # the device used
        "#/properties/dataset/properties/kind": vocab.DATASET_KINDS,
        f"{config}/model": tuple(vocab.MODELS),
        f"{config}/device": vocab.DEVICES,  # as requested
        f"{config}/optimizer_impl": vocab.OPTIMIZER_IMPLS,
        f"{config}/precision": vocab.PRECISIONS,
        f"{config}/data_pipeline": vocab.DATA_PIPELINES,
        f"{config}/inference_paths/items": vocab.INFERENCE_PATHS,
        "#/properties/latency/items/properties/path": vocab.INFERENCE_PATHS,
    }
    found = enums(results_schema())
    assert set(found) == set(expected), "an enum of the schema is not tied to bench.vocab here"
    for pointer, values in expected.items():
        if values is not None:
            assert tuple(found[pointer]) == values, pointer
    assert SCHEMA_VERSION == max(found["#/properties/schema_version"]), "the trainers write a version the schema lacks"


def test_committed_documents_exist():
    assert len(COMMITTED) >= 20 and V2 in COMMITTED and V3 in COMMITTED


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT / "docs")))
def test_committed_results_validate(path):
    load_results(path)


@pytest.mark.parametrize("make", [v4, v4_eval_only, v5, v5_eval_only, v6])
def test_version_4_to_6_documents_validate(make):
    """The bases of the version 4 to 6 breakages below are valid: each breakage fails for its own reason."""
    assert make()["schema_version"] in (4, 5, SCHEMA_VERSION) and SCHEMA_VERSION == 6
    validate_results(make())


DROP = object()  # remove the key


def mutated(base, keys, change):
    """A copy of the document at `base` (a path, or a function that makes it) with the value at `keys` dropped,
    replaced, or passed through `change`."""
    doc = base() if callable(base) else json.loads(base.read_text())
    parent = doc
    for key in keys[:-1]:
        parent = parent[key]
    if change is DROP:
        del parent[keys[-1]]
    else:
        parent[keys[-1]] = change(copy.deepcopy(parent[keys[-1]])) if callable(change) else change
    return doc


# (base, keys, change, what the one-line error starts with after "results: ")
MUTATIONS = {
    "missing model": (V3, ["model"], DROP, "$: 'model' is a required property"),
    "missing config key": (V3, ["config", "seed"], DROP, "$.config: 'seed' is a required property"),
    "v3 without precision_label": (V3, ["precision_label"], DROP, "$: 'precision_label' is a required property"),
    "v3 without warmup_steps": (V3, ["config", "warmup_steps"], DROP, "$.config: 'warmup_steps' is a required"),
    "v3 latency without peak memory": (V3, ["latency"], lambda _: json.loads(V2.read_text())["latency"][:1],
                                       "$.latency[0]: 'peak_memory_bytes' is a required property"),
    "unknown schema version": (v6, ["schema_version"], 7, "$.schema_version: 7 is not one of"),
    "v4 without startup_seconds": (v4, ["startup_seconds"], DROP, "$: 'startup_seconds' is a required property"),
    "v4 without repeat": (v4, ["config", "repeat"], DROP, "$.config: 'repeat' is a required property"),
    "v4 without precision_label": (v4, ["precision_label"], DROP, "$: 'precision_label' is a required property"),
    "negative startup time": (v4, ["startup_seconds"], -1.0, "$.startup_seconds: -1.0 is less than the minimum"),
    "startup time as text": (v4, ["startup_seconds"], "2s", "$.startup_seconds: '2s' is not of type"),
    "repeat 0": (v4, ["config", "repeat"], 0, "$.config.repeat: 0 is less than the minimum of 1"),
    "repeat as a number": (v4, ["config", "repeat"], 1.5, "$.config.repeat: 1.5 is not of type 'integer'"),
    "incomplete": (V3, ["complete"], False, "$.complete: "),
    "unknown language": (V3, ["language"], "java", "$.language: 'java' is not one of"),
    "unknown precision": (V3, ["config", "precision"], "fp16", "$.config.precision: 'fp16' is not one of"),
    "unknown pipeline": (V3, ["config", "data_pipeline"], "dali", "$.config.data_pipeline: "),
    "unknown optimizer": (V3, ["config", "optimizer_impl"], "fused", "$.config.optimizer_impl: "),
    "unknown device type": (V3, ["device", "type"], "tpu", "$.device.type: "),
    "unknown dataset kind": (V3, ["dataset", "kind"], "imagenet", "$.dataset.kind: "),
    "unknown inference path": (V2, ["latency", 0, "path"], "tensorrt", "$.latency[0].path: "),
    "no inference path": (V3, ["config", "inference_paths"], [], "$.config.inference_paths: [] should be non-empty"),
    "repeated inference path": (V3, ["config", "inference_paths"], ["eager", "eager"], "$.config.inference_paths: "),
    "param count as text": (V3, ["param_count"], "11M", "$.param_count: '11M' is not of type 'integer'"),
    "short sha256": (V3, ["dataset", "sha256"], "abc", "$.dataset.sha256: 'abc' does not match"),
    "negative train time": (V3, ["epochs", 0, "train_seconds"], -1.0, "$.epochs[0].train_seconds: -1.0 is less"),
    "zero eval time": (V3, ["epochs", 1, "eval_seconds"], 0.0, "$.epochs[1].eval_seconds: 0.0 is less"),
    "NaN loss": (V3, ["epochs", 0, "train_loss"], float("nan"), "$.epochs[0].train_loss: nan is not of type"),
    "accuracy above 100": (V3, ["epochs", 2, "test_accuracy"], 100.5, "$.epochs[2].test_accuracy: 100.5 is greater"),
    "negative peak memory": (V3, ["peak_memory_bytes"], -1, "$.peak_memory_bytes: -1 is less"),
    "no latency samples": (V2, ["latency", 1, "samples_ms"], [], "$.latency[1].samples_ms: [] should be non-empty"),
    "zero latency sample": (V2, ["latency", 1, "samples_ms", 3], 0.0, "$.latency[1].samples_ms[3]: 0.0 is less"),
    "unavailable without reason": (V3, ["unavailable"], [{"feature": "x"}], "$.unavailable[0]: 'reason' is a"),
    # What only the cross-field checks see
    "config.model differs": (V3, ["config", "model"], "resnet34", "$.config.model: 'resnet34' is not the model"),
    "one epoch missing": (V3, ["epochs"], lambda e: e[:2], "$.epochs: 2 epoch records for 3 configured epochs"),
    "epochs numbered wrong": (V3, ["epochs", 1, "epoch"], 3, "$.epochs[1].epoch: is 3, expected 2"),
    "final is not the last epoch": (V3, ["final", "test_accuracy"], 50.0, "$.final.test_accuracy: differs"),
    "wrong median": (V2, ["latency", 0, "median_ms"], lambda m: m * 1.01, "$.latency[0].median_ms: is "),
    "wrong p99": (V2, ["concurrency", 1, "p99_ms"], lambda m: m + 1, "$.concurrency[1].p99_ms: is "),
    "path not configured": (V2, ["config", "inference_paths"], ["eager", "aoti"], "$.latency[2].path: 'compile'"),
    "repeated latency point": (V2, ["latency"], lambda lat: lat + lat[:1], "$.latency[6]: repeats path 'eager'"),
    "requests are not samples": (V2, ["concurrency", 0, "requests"], 49, "$.concurrency[0].requests: is 49, but"),
    "throughput is not requests / seconds": (V2, ["concurrency", 0, "images_per_second"], lambda x: x * 2,
                                             "$.concurrency[0].images_per_second: is not requests / seconds"),
    "no warm-up time although one ran": (V3, ["warmup_seconds"], None, "$.warmup_seconds: must be a time when"),
    "warm-up time although none ran": (V3, ["config", "warmup_steps"], 0, "$.warmup_seconds: must be a time when"),
    "label of another precision": (V3, ["precision_label"], "bf16 autocast", "$.precision_label: 'bf16 autocast'"),
    "wrong empty-sample median": (V3, ["empty_sample_us", "median_us"], 99.0, "$.empty_sample_us.median_us: is 99"),
    "v4 start-up time with --eval-only": (v4_eval_only, ["startup_seconds"], 2.5, "$.startup_seconds: must be null"),
    "training trace with --eval-only": (v5_eval_only, ["traces", "train"], "t/train.json", "$.traces.train: must be"),
    "traces without --trace-steps": (v5, ["config", "trace_steps"], 0, "$.traces: must be null exactly when"),
    "no traces with --trace-steps": (v5, ["traces"], None, "$.traces: must be null exactly when"),
    "--trace-steps without its folder": (v5, ["config", "trace_dir"], None, "$.config.trace_dir: must be given"),
    "v5 without peak_rss_bytes": (v5, ["peak_rss_bytes"], DROP, "$: 'peak_rss_bytes' is a required property"),
    "v5 without trace_steps": (v5, ["config", "trace_steps"], DROP, "$.config: 'trace_steps' is a required"),
    "traces without inference": (v5, ["traces", "inference"], DROP, "$.traces: "),
    "v6 without process": (v6, ["process"], DROP, "$: 'process' is a required property"),
    "v6 without dataset_hash_seconds": (v6, ["dataset_hash_seconds"], DROP, "$: 'dataset_hash_seconds' is a required"),
    "process without libraries": (v6, ["process", "libraries"], DROP, "$.process: 'libraries' is a required"),
    "build id not hex": (v6, ["process", "libraries", 0, "build_id"], "xyz", "$.process.libraries[0].build_id: "),
    "thread state without its mode": (v6, ["process", "windows", "epoch 1", "inference_mode"], DROP,
                                      "$.process.windows['epoch 1']: 'inference_mode' is a required property"),
    "denormals flushed above 1": (v6, ["process", "flags", "denormals_flushed"], 2.0,
                                  "$.process.flags.denormals_flushed: 2.0 is greater than the maximum"),
    "garbage collections of two generations": (v6, ["process", "gc", "collections_in_windows"], [0, 0],
                                               "$.process.gc.collections_in_windows: [0, 0] is too short"),
    "no state at a timed window": (v6, ["process", "windows"], lambda w: {k: v for k, v in w.items() if k != "epoch 2"},
                                   "$.process.windows: has no state for the timed window 'epoch 2'"),
}


@pytest.mark.parametrize("base, keys, change, expected", MUTATIONS.values(), ids=MUTATIONS.keys())
def test_a_single_breakage_fails_naming_the_field(base, keys, change, expected):
    doc = mutated(base, keys, change)
    with pytest.raises(ResultsError) as err:
        validate_results(doc)
    message = str(err.value)
    assert message.startswith(f"results: {expected}") and "\n" not in message, message


def test_an_error_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(mutated(V3, ["complete"], False)))
    with pytest.raises(ResultsError, match=rf"^{path}: \$\.complete: "):
        load_results(path)
    path.write_text("{")
    with pytest.raises(ResultsError, match=rf"^{path}: cannot read results"):
        load_results(path)
