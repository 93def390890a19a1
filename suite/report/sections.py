"""Which results documents are comparable (a section each), which are repeats of one another (a row each), and
what each row and section holds: RunSamples, the Python / C++ ratios and the floor (suite/report/compare.py).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.vocab import FLAGS, LANGUAGES, MODES
from suite import metrics, traces
from suite.report import compare
from suite.report.samples import RunSamples, table_epochs
from suite.schema import ResultsError

LANGUAGE_NAMES = {"python": "Python", "cpp": "C++"}

# Config keys that select an implementation variant rather than a different experiment (the flags of the suite's
# modes, bench.vocab.MODES): runs that differ only in these stay in one section, side by side, under a "mode"
# label that names the keys that differ from their default.
MODE_DEFAULTS = {flag.dest: flag.default for flag in FLAGS
                 if any(flag.name in mode_flags for mode_flags in MODES.values())}

# Config keys that do not change what was measured: the requested device ("auto" vs "cuda") is replaced by
# the device the run actually used, the model is a row of the tables, a weights path is reduced to
# whether weights were loaded (the same file may live in two places), and the inference paths and
# concurrency measured after training do not change the training numbers (their rows say what ran), and
# a run's repeat number only tells repeats apart (they are the runs a comparison's interval rests on), and
# where a run wrote its traces is a path of that run.
NOISE_KEYS = {"device", "model", "load_weights", "inference_paths", "concurrency", "concurrency_iters", "repeat",
              "trace_dir"}

# Notes that a section's runs call for: {template block: whether a run needs it}. A kind of run whose numbers
# the tables must flag (traced runs pay the profiler's cost) is one more entry here and a block in report.md.tmpl.
RUN_NOTES = {"traced_note": lambda doc: bool(doc["config"].get("trace_steps")),
             "hooked_note": lambda doc: bool(metrics.hooks_set_in([doc]))}

# The original report's latency column: eager, one image per forward.
EAGER_BS1 = ("eager", 1)

# The results table's and the run-facts table's columns (Markdown and CSV): (header, Row field, digits)
RESULTS_COLUMNS = [
    ("Total time (s)", "total_seconds", 1), ("Time/epoch (s)", "epoch_seconds", 2),
    ("Latency (ms/image, bs 1, median)", "latency_bs1", 2), ("Train loss", "train_loss", 4),
    ("Train acc %", "train_accuracy", 2), ("Test loss", "test_loss", 4), ("Test acc %", "test_accuracy", 2),
    ("Images/s", "images_per_second", 1)]
FACTS_COLUMNS = [
    ("Start-up (s)", "startup_seconds", 2), ("Warm-up (s)", "warmup_seconds", 2), ("Epoch 1 (s)", "epoch1_seconds", 2),
    ("Later epochs (s)", "later_epoch_seconds", 2), ("Empty sample (µs)", "empty_sample_us", 3),
    ("Training peak memory (MiB)", "peak_memory_mib", 0), ("Peak RSS (MiB)", "peak_rss_mib", 0)]


@dataclass
class Row:
    """The runs of one (mode, model, language): their documents and what they measured."""

    mode: str
    model: str
    language: str
    docs: list
    values: dict  # {field: RunSamples} of the results and run-facts tables
    latency_ms: dict  # {(path, batch size): RunSamples}
    concurrency: dict  # {threads: {"images_per_second": RunSamples, "latency_ms": RunSamples}}
    precision_label: str
    unavailable: list
    step_breakdown: dict | None

    @property
    def runs(self):
        return len(self.docs)


def row_samples(row, name):
    """A results-table column's RunSamples (None where the row has no eager batch-1 latency)."""
    return row.latency_ms.get(EAGER_BS1) if name == "latency_bs1" else row.values[name]


@dataclass
class Compared:
    """One row of a ratio table: Python / C++ of one quantity of one (mode, model)."""

    mode: str
    model: str
    metric: str
    ratio: compare.Ratio


@dataclass
class Section:
    """A group of comparable runs: its rows, ratios and floor, the notes its runs call for (RUN_NOTES) and its plots
    ({title: file name}, drawn once the output folder exists)."""

    key: dict
    why_apart: str
    header: str
    files: list
    rows: list
    ratios: list
    floor: list
    notes: list
    plots: dict = field(default_factory=dict)


def mode_label(doc):
    cfg = doc["config"]
    parts = [f"{key}={cfg[key]}" for key, default in MODE_DEFAULTS.items() if cfg[key] != default]
    return ", ".join(parts) or "default"


def comparability_key(doc):
    """What must be equal for two runs to share tables: dataset, hardware, software and the config
    minus noise and mode keys. A flat dict so that differences can be named field by field."""
    key = {"dataset.kind": doc["dataset"]["kind"], "dataset.sha256": doc["dataset"]["sha256"],
           "dataset.train_records": doc["dataset"]["train_records"],
           "dataset.test_records": doc["dataset"]["test_records"],
           "device.type": doc["device"]["type"], "device.name": doc["device"]["name"],
           "device.threads": doc["device"]["threads"],
           "config.load_weights": doc["config"].get("load_weights") is not None,
           "distributed.world_size": (doc.get("distributed") or {}).get("world_size")}  # a torchrun job's ranks
    for name, value in doc["backend"].items():
        if name not in MODE_DEFAULTS:  # cudnn_benchmark is a mode, recorded in config too
            key[f"backend.{name}"] = value
    for name, value in doc["config"].items():
        if name not in NOISE_KEYS and name not in MODE_DEFAULTS:
            key[f"config.{name}"] = value
    return key


def group_documents(docs):
    """[(key, [doc...])] in order of first appearance."""
    groups = {}
    for doc in docs:
        key = comparability_key(doc)
        groups.setdefault(json.dumps(key, sort_keys=True), (key, []))[1].append(doc)
    return list(groups.values())


def differing_fields(keys):
    """Fields whose value is not the same in every group key."""
    names = sorted({name for key in keys for name in key})
    return [name for name in names if len({json.dumps(key.get(name)) for key in keys}) > 1]


def short(value):
    if isinstance(value, str) and len(value) == 64:  # a sha256: the first 12 hex digits tell them apart
        return value[:12] + "…"
    return str(value)


def why_apart(key, fields):
    if not fields:
        return ""
    return "Kept apart from the other sections because these differ: " + ", ".join(
        f"{name} = {short(key.get(name))}" for name in fields) + "."


def runs_by_key(docs):
    """Repeated runs of one (mode, model, language) collected together, in a stable order."""
    out = {}
    for doc in docs:
        out.setdefault((mode_label(doc), doc["model"], doc["language"]), []).append(doc)
    return dict(sorted(out.items(), key=lambda kv: (kv[0][0] != "default", kv[0][0], kv[0][1],
                                                    LANGUAGES.index(kv[0][2]))))


def mib(value):
    return None if value is None else value / 2**20


def row_values(docs):
    """The results and run-facts tables' quantities of repeated runs: per-run scalars one sample each."""
    def per_run(get, unit):
        return RunSamples.one_per_run([get(doc) for doc in docs], unit)
    out = {"total_seconds": per_run(lambda d: d["total_seconds"], "s"),
           "epoch_seconds": RunSamples([[e["train_seconds"] for e in table_epochs(d)] for d in docs], "s"),
           "images_per_second": RunSamples([[e["images_per_second"] for e in table_epochs(d)] for d in docs],
                                           "images/s")}
    for name, unit in (("train_loss", ""), ("train_accuracy", "%"), ("test_loss", ""), ("test_accuracy", "%")):
        out[name] = per_run(lambda d, name=name: d["final"][name], unit)
    # Run facts (schema 3, start-up schema 4; empty for older documents)
    return out | {
        "startup_seconds": metrics.startup_seconds(docs),
        "warmup_seconds": per_run(lambda d: d.get("warmup_seconds"), "s"),
        "epoch1_seconds": metrics.first_epoch_seconds(docs),
        "later_epoch_seconds": metrics.steady_epoch_seconds(docs),
        "empty_sample_us": per_run(lambda d: d.get("empty_sample_us", {}).get("median_us"), "us"),
        "peak_memory_mib": per_run(lambda d: mib(d.get("peak_memory_bytes")), "MiB"),
        "peak_rss_mib": per_run(lambda d: mib(d.get("peak_rss_bytes")), "MiB")}


def aggregate(mode, model, language, docs):
    """One row: repeated runs pooled (every epoch and sample), per-run scalars one sample per run."""
    return Row(mode, model, language, docs, row_values(docs),
               latency_ms={p: metrics.latency_ms(docs, *p) for p in compare.latency_points(docs)},
               concurrency={n: {"images_per_second": metrics.concurrency_images_per_second(docs, n),
                                "latency_ms": metrics.concurrency_request_ms(docs, n)}
                            for n in compare.concurrency_counts(docs)},
               precision_label=" / ".join(sorted({d.get("precision_label", d["config"]["precision"]) for d in docs})),
               unavailable=sorted({f"{u['feature']}: {u['reason']}" for d in docs for u in d["unavailable"]}),
               step_breakdown=step_breakdown(docs))


def trace_file(doc, which):
    """A results document's trace file (schema 4, --trace-steps): where the run wrote it, else beside the results
    file in a folder of the same name, perhaps gzipped (how committed results keep them); None when there is none."""
    written = (doc.get("traces") or {}).get(which)
    if not written:
        return None
    written = Path(written)
    beside = Path(doc["_path"]).parent / written.parent.name / written.name
    for candidate in (written, beside, beside.with_name(beside.name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def step_breakdown(docs):
    """Where a training step's time goes (suite/traces.py), the median over the runs' traces; None without any."""
    try:
        found = [traces.breakdown(path) for path in (trace_file(doc, "train") for doc in docs) if path]
    except traces.TraceError as err:
        raise ResultsError(str(err)) from None
    if not found:
        return None
    keys = ("wall_us", "in_ops_us", "between_ops_us", "device_busy_us")
    return {key: (None if any(b[key] is None for b in found) else float(np.median([b[key] for b in found])))
            for key in keys} | {"steps": sum(b["steps"] for b in found), "traces": len(found)}


def hardware_line(docs):
    doc = docs[0]
    dev = doc["device"]
    hw = f"GPU {dev['name']}" if dev["type"] == "cuda" else f"CPU {dev['name']} ({dev['threads']} threads)"

    def per_language(name):
        values = {}
        for d in docs:
            values.setdefault("n/a" if d.get(name) is None else str(d[name]), []).append(LANGUAGE_NAMES[d["language"]])
        if len(values) == 1:
            return next(iter(values))
        return " / ".join(f"{v} ({', '.join(sorted(set(langs)))})" for v, langs in values.items())

    ds = doc["dataset"]
    return (f"**Hardware:** {hw}; torch {per_language('torch_version')}, CUDA {per_language('cuda_version')}, "
            f"cuDNN {per_language('cudnn_version')}. **Dataset:** {ds['kind']} (sha256 {short(ds['sha256'])}), "
            f"{ds['train_records']} train / {ds['test_records']} test images. "
            f"**Epochs:** {doc['config']['epochs']}, batch size {doc['config']['batch_size']}.")


def build_section(key, docs, fields, peak_tflops):
    rows = [aggregate(mode, model, language, run_docs)
            for (mode, model, language), run_docs in runs_by_key(docs).items()]
    by_key = {(r.mode, r.model, r.language): r for r in rows}
    ratios = [Compared(r.mode, r.model, name, found) for r in rows if r.language == "python"
              and (r.mode, r.model, "cpp") in by_key
              for name, found in compare.ratio_rows(r.docs, by_key[r.mode, r.model, "cpp"].docs).items()]
    floor = [{"mode": r.mode, "language": r.language, "model": r.model,
              **compare.floor_row(r.docs, r.values["epoch_seconds"], r.latency_ms.get(EAGER_BS1), peak_tflops)}
             for r in rows]
    notes = [name for name, applies in RUN_NOTES.items() if any(applies(doc) for doc in docs)]
    return Section(key, why_apart(key, fields), hardware_line(docs), [d["_path"] for d in docs], rows, ratios,
                   floor, notes)


def build_sections(docs, peak_tflops=None):
    groups = group_documents(docs)
    fields = differing_fields([key for key, _ in groups])
    return [build_section(key, group_docs, fields, peak_tflops) for key, group_docs in groups]
