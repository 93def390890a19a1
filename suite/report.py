"""Turn results documents (schema/results.schema.json) into a report: tables, ratios, floor, plots.

    python -m suite.report RESULTS... --out DIR [--peak-tflops X]

Writes DIR/report.md (tables, linked PNGs), DIR/report.json and the tables as CSV (results_table, ratios,
latency, concurrency).
Runs of the same configuration are aggregated (median, p10-p90 spread); runs that are not comparable
(other dataset, config or hardware) go to separate sections that say what differs. Every Python / C++ ratio
carries a 95% interval from suite.stats (over runs when there are repeats), and a verdict only where it excludes 1.
"""

import argparse
import csv
import functools
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI machines or the device box
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from bench.results import percentile  # noqa: E402
from bench.vocab import FLAGS, INFERENCE_PATHS, LANGUAGES, MODES  # noqa: E402
from suite import stats, traces  # noqa: E402
from suite.schema import ResultsError, load_results  # noqa: E402

PROG = "suite.report"
LANGUAGE_NAMES = {"python": "Python", "cpp": "C++"}
LANGUAGE_COLORS = {"python": "tab:blue", "cpp": "tab:orange"}
# Twins often produce identical accuracy curves: different markers and dashes keep both lines visible.
LANGUAGE_LINES = {"python": {"marker": "o", "linestyle": "-", "markersize": 8},
                  "cpp": {"marker": "x", "linestyle": "--", "markersize": 10}}

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

# Vendor dense peaks in TFLOP/s (no sparsity). First matching substring of the device name wins, so the
# more specific names come first. "tf32" applies when cuDNN may use TF32 (PyTorch's default for convs).
KNOWN_PEAK_TFLOPS = [
    ("H100 PCIe", {"fp32": 51.0, "tf32": 378.0, "fp16": 756.0}),
    ("H200", {"fp32": 67.0, "tf32": 495.0, "fp16": 989.0}),
    ("H100", {"fp32": 67.0, "tf32": 495.0, "fp16": 989.0}),
    ("A100", {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0}),
    ("L4", {"fp32": 30.3, "tf32": 60.0, "fp16": 121.0}),
    ("V100", {"fp32": 15.7, "fp16": 125.0}),
    ("T4", {"fp32": 8.1, "fp16": 65.0}),
]
NO_PEAK = "no peak known (pass --peak-tflops)"
# The original report's latency column: eager, one image per forward.
EAGER_BS1 = ("eager", 1)


# ---------------------------------------------------------------------------------------------------------
# Statistics over runs
# ---------------------------------------------------------------------------------------------------------

def spread_stat(values):
    """Median and p10-p90 of a list of numbers (None entries dropped); None when nothing is left."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    return {"median": percentile(values, 50), "p10": percentile(values, 10), "p90": percentile(values, 90),
            "p99": percentile(values, 99), "n": len(values)}


def steady_epochs(doc):
    """Epochs 2..N: epoch 1 carries one-off costs (lazy initialization, autotuning, allocator growth), so it
    is a metric of its own and stays out of the steady state. A 1-epoch run has no steady state."""
    return doc["epochs"][1:]


def table_epochs(doc):
    """What the results table shows per run: the steady state, or epoch 1 when that is all the run has."""
    return steady_epochs(doc) or doc["epochs"][:1]


def startup_samples(doc):
    """Process start to first training step (schema 4); older documents have none."""
    return [] if doc.get("startup_seconds") is None else [doc["startup_seconds"]]


# ---------------------------------------------------------------------------------------------------------
# Grouping: which documents are comparable, and which are repeats of one another
# ---------------------------------------------------------------------------------------------------------

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
           "config.load_weights": doc["config"].get("load_weights") is not None}
    for name, value in doc["backend"].items():
        if name not in MODE_DEFAULTS:  # cudnn_benchmark is a mode, recorded in config too
            key[f"backend.{name}"] = value
    for name, value in doc["config"].items():
        if name not in NOISE_KEYS and name not in MODE_DEFAULTS:
            key[f"config.{name}"] = value
    return key


def frozen(key):
    return json.dumps(key, sort_keys=True)


def group_documents(docs):
    """[(key, [doc...])] in order of first appearance."""
    groups = {}
    for doc in docs:
        key = comparability_key(doc)
        groups.setdefault(frozen(key), (key, []))[1].append(doc)
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


def run_key(doc):
    return (mode_label(doc), doc["model"], doc["language"])


def runs_by_key(docs):
    """Repeated runs of one (mode, model, language) collected together, in a stable order."""
    out = {}
    for doc in docs:
        out.setdefault(run_key(doc), []).append(doc)
    return dict(sorted(out.items(), key=lambda kv: (kv[0][0] != "default", kv[0][0], kv[0][1],
                                                    LANGUAGES.index(kv[0][2]))))


# ---------------------------------------------------------------------------------------------------------
# One row of the results table: repeated runs aggregated
# ---------------------------------------------------------------------------------------------------------

def latency_samples(docs, path, batch_size):
    """All latency samples of one inference path at one batch size, pooled across repeated runs."""
    return [s for doc in docs for lat in doc["latency"] if (lat["path"], lat["batch_size"]) == (path, batch_size)
            for s in lat["samples_ms"]]


def latency_points(docs):
    """The (path, batch size) pairs measured, paths in the trainers' order, then by batch size."""
    points = {(lat["path"], lat["batch_size"]) for doc in docs for lat in doc["latency"]}
    return sorted(points, key=lambda p: (INFERENCE_PATHS.index(p[0]), p[1]))


def concurrency_counts(docs):
    return sorted({c["threads"] for doc in docs for c in doc["concurrency"]})


def aggregate_concurrency(docs, threads):
    """Throughput per run (median and spread over repeated runs) and every request's latency, pooled."""
    entries = [c for doc in docs for c in doc["concurrency"] if c["threads"] == threads]
    return {"images_per_second": spread_stat([c["images_per_second"] for c in entries]),
            "latency_ms": spread_stat([s for c in entries for s in c["samples_ms"]])}


def aggregate_runs(docs):
    """Pool epochs and latency samples of repeated runs; per-run scalars become median and spread."""
    epochs = [ep for doc in docs for ep in table_epochs(doc)]
    finals = [doc["final"] for doc in docs]
    return {
        "runs": len(docs),
        "total_seconds": spread_stat([doc["total_seconds"] for doc in docs]),
        "epoch_seconds": spread_stat([ep["train_seconds"] for ep in epochs]),
        "images_per_second": spread_stat([ep["images_per_second"] for ep in epochs]),
        "train_loss": spread_stat([f["train_loss"] for f in finals]),
        "train_accuracy": spread_stat([f["train_accuracy"] for f in finals]),
        "test_loss": spread_stat([f["test_loss"] for f in finals]),
        "test_accuracy": spread_stat([f["test_accuracy"] for f in finals]),
        "latency_ms": {point: spread_stat(latency_samples(docs, *point)) for point in latency_points(docs)},
        "concurrency": {n: aggregate_concurrency(docs, n) for n in concurrency_counts(docs)},
        "unavailable": sorted({f"{u['feature']}: {u['reason']}" for doc in docs for u in doc["unavailable"]}),
        # Run facts (schema 3, start-up schema 4; None for older documents): what "fp32" was, start-up, the
        # warm-up, epoch 1 apart from the later epochs, the clock's own cost and the training window's peak memory.
        "startup_seconds": spread_stat([s for doc in docs for s in startup_samples(doc)]),
        "precision_label": " / ".join(sorted({doc.get("precision_label", doc["config"]["precision"])
                                              for doc in docs})),
        "warmup_seconds": spread_stat([doc.get("warmup_seconds") for doc in docs]),
        "epoch1_seconds": spread_stat([s for doc in docs for s in epoch1_seconds(doc)]),
        "later_epoch_seconds": spread_stat([s for doc in docs for s in steady_epoch_seconds(doc)]),
        "empty_sample_us": spread_stat([doc.get("empty_sample_us", {}).get("median_us") for doc in docs]),
        "peak_memory_mib": spread_stat([doc["peak_memory_bytes"] / 2**20 for doc in docs
                                        if doc.get("peak_memory_bytes") is not None]),
        "peak_rss_mib": spread_stat([doc["peak_rss_bytes"] / 2**20 for doc in docs if doc.get("peak_rss_bytes")]),
        "step_breakdown": step_breakdown(docs),
    }


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
    return {key: (None if any(b[key] is None for b in found) else percentile(sorted(b[key] for b in found), 50))
            for key in keys} | {"steps": sum(b["steps"] for b in found), "traces": len(found)}


# ---------------------------------------------------------------------------------------------------------
# Ratios Python / C++
# ---------------------------------------------------------------------------------------------------------

NO_DIFFERENCE = "no difference shown (CI includes 1)"


# Over runs, a verdict also needs the two-sided Mann-Whitney p of the direction the interval shows at or below this:
# with few runs a percentile bootstrap is narrower than its nominal 95%.
VERDICT_P = 0.05


def verdict(comparison, lower_is_better):
    """The faster language, only where the interval excludes 1 (and, over runs, the test agrees); every metric
    here is a speed: a time, lower is faster, or a rate, higher is faster."""
    if comparison.low is None:
        return "n/a: too few samples for an interval"
    if not comparison.excludes_one():
        return NO_DIFFERENCE
    python_smaller = comparison.high < 1
    p_two_sided = 2 * (comparison.p_less if python_smaller else comparison.p_greater)
    if comparison.unit == stats.UNIT_RUNS and p_two_sided > VERDICT_P:
        return f"no difference shown (Mann-Whitney p = {min(p_two_sided, 1):.2g} over runs)"
    return f"{'Python' if python_smaller == lower_is_better else 'C++'} faster"


def compare(metric, py_runs, cpp_runs, lower_is_better):
    """One row: each language's runs (a list of samples per results document), compared by suite.stats;
    None when a language has no sample of this metric."""
    py, cpp = [s for r in py_runs for s in r], [s for r in cpp_runs for s in r]
    if not py or not cpp:
        return None
    c = stats.compare_runs(py_runs, cpp_runs)
    py_stat, cpp_stat = spread_stat(py), spread_stat(cpp)
    spread = max(py_stat["p90"] - py_stat["p10"], cpp_stat["p90"] - cpp_stat["p10"])  # the wider p10-p90
    return {"metric": metric, "python": py_stat, "cpp": cpp_stat, "ratio": c.ratio, "spread": spread,
            "ratio_low": c.low, "ratio_high": c.high, "interval": c.interval_text(3), "p_greater": c.p_greater,
            "p_less": c.p_less, "unit": c.unit, "n_python": c.n_a, "n_cpp": c.n_b,
            "verdict": verdict(c, lower_is_better),
            "python_iqr_over_median": stats.iqr_over_median(py), "python_noisy": stats.is_noisy(py),
            "cpp_iqr_over_median": stats.iqr_over_median(cpp), "cpp_noisy": stats.is_noisy(cpp)}


def ratio_metrics(py_docs, cpp_docs):
    """(metric, samples of one run, lower is better) for everything both languages measured."""
    metrics = [("time per epoch (s)", steady_epoch_seconds, True),
               ("images/s (train)", steady_images_per_second, False),
               ("epoch 1 (s)", epoch1_seconds, True), ("start-up (s)", startup_samples, True)]
    cpp_points, cpp_counts = set(latency_points(cpp_docs)), set(concurrency_counts(cpp_docs))
    for path, bs in [p for p in latency_points(py_docs) if p in cpp_points]:
        metrics.append((f"latency {path} bs={bs} (ms/batch)", functools.partial(run_latency, path, bs), True))
    for n in [n for n in concurrency_counts(py_docs) if n in cpp_counts]:
        metrics.append((f"images/s, {n} threads x bs 1", functools.partial(run_concurrency, n), False))
    return metrics


# The samples of one run, per metric.

def steady_epoch_seconds(doc):
    return [ep["train_seconds"] for ep in steady_epochs(doc)]


def steady_images_per_second(doc):
    return [ep["images_per_second"] for ep in steady_epochs(doc)]


def epoch1_seconds(doc):
    return [ep["train_seconds"] for ep in doc["epochs"][:1]]


def run_latency(path, batch_size, doc):
    return latency_samples([doc], path, batch_size)


def run_concurrency(threads, doc):
    return [c["images_per_second"] for c in doc["concurrency"] if c["threads"] == threads]


def ratio_rows(py_docs, cpp_docs):
    """Python / C++ for every shared metric; the documents of each language are repeats (one run each)."""
    rows = [compare(metric, [samples(d) for d in py_docs], [samples(d) for d in cpp_docs], lower_is_better)
            for metric, samples, lower_is_better in ratio_metrics(py_docs, cpp_docs)]
    return [r for r in rows if r]


# ---------------------------------------------------------------------------------------------------------
# Distance from the hardware floor
# ---------------------------------------------------------------------------------------------------------

@functools.cache
def flops_per_image(model_name):
    """(inference, training) FLOPs for one 32x32 image, counted by torch on the real model definition.
    The meta device gives shapes without arithmetic, so counting costs nothing like a real forward."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench.model import make_model

    with torch.device("meta"):
        model = make_model(model_name)
        x = torch.empty(1, 3, 32, 32)
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(x)
    inference = counter.get_total_flops()
    model.train()
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return inference, counter.get_total_flops()


def precision_of(doc):
    """Which peak applies: the half-precision one for bf16 (the tables' fp16 column: the same tensor-core rate),
    else TF32 where cuDNN is allowed to use it."""
    if doc["config"]["precision"] == "bf16":
        return "fp16"
    return "tf32" if doc["backend"]["cudnn_allow_tf32"] else "fp32"


def known_peak(doc):
    """(TFLOP/s, source) for the device of `doc`, or (None, reason)."""
    if doc["device"]["type"] == "cuda":
        for name, peaks in KNOWN_PEAK_TFLOPS:
            if name in doc["device"]["name"]:
                precision = precision_of(doc)
                precision = precision if precision in peaks else "fp32"
                return peaks[precision], f"{name} dense {precision} peak (vendor spec)"
    return None, NO_PEAK


def floor_row(docs, agg, peak_tflops):
    doc = docs[0]
    if peak_tflops:
        peak, source = peak_tflops, "--peak-tflops"
    else:
        peak, source = known_peak(doc)
    inference, training = flops_per_image(doc["model"])
    row = {"flops_per_image_inference": inference, "flops_per_image_training": training,
           "train_images": doc["dataset"]["train_records"], "peak_tflops": peak, "peak_source": source,
           "floor_epoch_seconds": None, "epoch_multiple": None, "floor_latency_bs1_ms": None,
           "latency_bs1_multiple": None}
    if peak:
        row["floor_epoch_seconds"] = training * row["train_images"] / (peak * 1e12)
        row["floor_latency_bs1_ms"] = inference / (peak * 1e12) * 1e3
        if agg["epoch_seconds"]:
            row["epoch_multiple"] = agg["epoch_seconds"]["median"] / row["floor_epoch_seconds"]
        if agg["latency_ms"].get(EAGER_BS1):
            row["latency_bs1_multiple"] = agg["latency_ms"][EAGER_BS1]["median"] / row["floor_latency_bs1_ms"]
    return row


# ---------------------------------------------------------------------------------------------------------
# One section of the report: a group of comparable runs
# ---------------------------------------------------------------------------------------------------------

def hardware_line(docs):
    doc = docs[0]
    dev = doc["device"]
    hw = f"GPU {dev['name']}" if dev["type"] == "cuda" else f"CPU {dev['name']} ({dev['threads']} threads)"

    def per_language(field):
        values = {}
        for d in docs:
            value = "n/a" if d.get(field) is None else str(d[field])
            values.setdefault(value, []).append(LANGUAGE_NAMES[d["language"]])
        if len(values) == 1:
            return next(iter(values))
        return " / ".join(f"{v} ({', '.join(sorted(set(langs)))})" for v, langs in values.items())

    ds = doc["dataset"]
    return (f"**Hardware:** {hw}; torch {per_language('torch_version')}, CUDA {per_language('cuda_version')}, "
            f"cuDNN {per_language('cudnn_version')}. **Dataset:** {ds['kind']} (sha256 {short(ds['sha256'])}), "
            f"{ds['train_records']} train / {ds['test_records']} test images. "
            f"**Epochs:** {doc['config']['epochs']}, batch size {doc['config']['batch_size']}.")


def build_section(key, docs, fields, peak_tflops):
    rows, ratios, floors = [], [], []
    aggregated = {}
    for (mode, model, language), run_docs in runs_by_key(docs).items():
        agg = aggregate_runs(run_docs)
        aggregated[(mode, model, language)] = (run_docs, agg)
        rows.append({"mode": mode, "language": language, "model": model, **agg})
        floors.append({"mode": mode, "language": language, "model": model,
                       **floor_row(run_docs, agg, peak_tflops)})
    for (mode, model, language), (py_docs, _) in aggregated.items():
        if language == "python" and (mode, model, "cpp") in aggregated:
            cpp_docs = aggregated[(mode, model, "cpp")][0]
            ratios += [{"mode": mode, "model": model, **r} for r in ratio_rows(py_docs, cpp_docs)]
    return {"key": key, "why_apart": why_apart(key, fields), "header": hardware_line(docs),
            "files": [d["_path"] for d in docs], "rows": rows, "ratios": ratios, "floor": floors,
            "runs": aggregated}


# ---------------------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------------------

def row_label(model, mode):
    return model if mode == "default" else f"{model}\n{mode}"


def plot_epoch_times(section, path):
    """Grouped bars: one group per model (and mode), one bar per language, whiskers p10-p90 of the results
    table's epochs (steady state)."""
    labels = list(dict.fromkeys(row_label(r["model"], r["mode"]) for r in section["rows"]))
    fig, ax = plt.subplots(figsize=(max(5, 1.8 * len(labels) + 2), 4))
    width = 0.38
    for i, language in enumerate(LANGUAGES):
        xs, heights, errs = [], [], [[], []]
        for r in section["rows"]:
            stat = r["epoch_seconds"]
            if r["language"] != language or not stat:
                continue
            xs.append(labels.index(row_label(r["model"], r["mode"])) + (i - 0.5) * width)
            heights.append(stat["median"])
            errs[0].append(stat["median"] - stat["p10"])
            errs[1].append(stat["p90"] - stat["median"])
        if xs:
            ax.bar(xs, heights, width, yerr=errs, capsize=4, label=LANGUAGE_NAMES[language],
                   color=LANGUAGE_COLORS[language])
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("training time per epoch (s)")
    ax.set_title("Time per epoch, steady state (median, p10–p90)")
    ax.legend(title="language")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def median_curve(docs, field):
    """Per-epoch median across repeated runs."""
    n = min(len(d["epochs"]) for d in docs)
    return [percentile(sorted(d["epochs"][e][field] for d in docs), 50) for e in range(n)]


def line_style(section, mode, language):
    """Lines of one mode share a colour; the language is the marker and dash. With one mode, colour = language."""
    modes = list(dict.fromkeys(m for (m, _, _) in section["runs"]))
    color = LANGUAGE_COLORS[language] if len(modes) == 1 else f"C{modes.index(mode) % 10}"
    return {**LANGUAGE_LINES[language], "color": color}


def line_label(mode, language):
    return LANGUAGE_NAMES[language] + ("" if mode == "default" else f" ({mode})")


def finish_line_axes(ax, entries):
    """A legend inside the axes for a few lines; to the right of them when it would cover the data."""
    if entries <= 4:
        ax.legend()
    else:  # outside, to the right: line_figure gives it room
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)


def line_figure(section, models):
    """One axis per model, 5 in wide each, plus room for a legend beside each when there are many lines."""
    lines = max(sum(1 for (_, m, _) in section["runs"] if m == model) for model in models)
    return plt.subplots(1, len(models), figsize=((5 + (3.5 if lines > 4 else 0)) * len(models), 4), squeeze=False)


def plot_test_accuracy(section, path):
    """One axis per model; both languages (and every mode) on it."""
    models = list(dict.fromkeys(model for (_, model, _) in section["runs"]))
    fig, axes = line_figure(section, models)
    for ax, model in zip(axes[0], models):
        for (mode, m, language), (docs, _) in section["runs"].items():
            curve = median_curve(docs, "test_accuracy")
            if m != model or not curve:
                continue
            ax.plot(range(1, len(curve) + 1), curve, label=line_label(mode, language),
                    **line_style(section, mode, language))
        ax.set_title(f"{model}: test accuracy per epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        finish_line_axes(ax, len(ax.get_lines()))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency(section, path):
    """One axis per batch size; a box of all samples_ms per model x language (x mode, x inference path)."""
    points = sorted({p for (docs, _) in section["runs"].values() for p in latency_points(docs)},
                    key=lambda p: (INFERENCE_PATHS.index(p[0]), p[1]))
    batch_sizes = sorted({bs for _, bs in points})
    if not batch_sizes:
        return False
    boxes = max(sum(1 for p in points if p[1] == bs) for bs in batch_sizes) * len(section["runs"])
    fig, axes = plt.subplots(1, len(batch_sizes), figsize=(max(4.5, 0.9 * boxes + 1.5) * len(batch_sizes), 4.6),
                             squeeze=False)
    for ax, bs in zip(axes[0], batch_sizes):
        data, labels, colors = [], [], []
        for inference_path in [p for p, b in points if b == bs]:
            for (mode, model, language), (docs, _) in section["runs"].items():
                samples = latency_samples(docs, inference_path, bs)
                if samples:
                    data.append(samples)
                    labels.append(f"{row_label(model, mode)}\n{inference_path}\n{LANGUAGE_NAMES[language]}")
                    colors.append(LANGUAGE_COLORS[language])
        box = ax.boxplot(data, patch_artist=True, showfliers=True, medianprops={"color": "black"})
        for patch, color in zip(box["boxes"], colors):
            patch.set_facecolor(color)
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
        ax.set_title(f"Inference latency, batch size {bs}")
        ax.set_yscale("log")  # stalls on a shared machine are 10x the median: keep the boxes readable
        ax.set_ylabel("latency per batch (ms, log scale)")
        shown = [k for k in LANGUAGES if LANGUAGE_COLORS[k] in colors]
        ax.legend([plt.Rectangle((0, 0), 1, 1, color=LANGUAGE_COLORS[k]) for k in shown],
                  [LANGUAGE_NAMES[k] for k in shown], title="language (black line: median)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_concurrency(section, path):
    """Throughput vs threads, one axis per model; a line per language (and mode). The GIL question."""
    models = [m for m in dict.fromkeys(model for (_, model, _) in section["runs"])
              if any(agg["concurrency"] for (_, m2, _), (_, agg) in section["runs"].items() if m2 == m)]
    if not models:
        return False
    fig, axes = line_figure(section, models)
    for ax, model in zip(axes[0], models):
        for (mode, m, language), (_, agg) in section["runs"].items():
            if m != model or not agg["concurrency"]:
                continue
            threads = sorted(agg["concurrency"])
            ax.plot(threads, [agg["concurrency"][n]["images_per_second"]["median"] for n in threads],
                    label=line_label(mode, language), **line_style(section, mode, language))
        ax.set_title(f"{model}: concurrent batch-1 inference")
        ax.set_xlabel("threads sharing the model")
        ax.set_ylabel("images/s (all threads)")
        ax.set_xscale("log", base=2)
        counts = sorted({n for (_, m, _), (_, agg) in section["runs"].items() if m == model
                         for n in agg["concurrency"]})
        ax.set_xticks(counts, [str(n) for n in counts])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_ylim(bottom=0)
        finish_line_axes(ax, len(ax.get_lines()))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_plots(section, out_dir, prefix):
    plots = {"Time per epoch": f"{prefix}epoch_time.png", "Test accuracy per epoch": f"{prefix}test_accuracy.png"}
    plot_epoch_times(section, out_dir / plots["Time per epoch"])
    plot_test_accuracy(section, out_dir / plots["Test accuracy per epoch"])
    if plot_latency(section, out_dir / f"{prefix}latency.png"):
        plots["Inference latency distribution"] = f"{prefix}latency.png"
    if plot_concurrency(section, out_dir / f"{prefix}concurrency.png"):
        plots["Concurrent inference: images/s vs threads"] = f"{prefix}concurrency.png"
    return plots


# ---------------------------------------------------------------------------------------------------------
# Markdown, CSV and JSON
# ---------------------------------------------------------------------------------------------------------

def fmt(value, digits=2):
    return "n/a" if value is None else f"{value:,.{digits}f}"


def fmt_stat(stat, digits=2, runs=1):
    """The median; with repeated runs, their p10-p90 too, so a reader sees how much runs disagree."""
    if not stat:
        return "n/a"
    if runs > 1:
        return f"{fmt(stat['median'], digits)} ({fmt(stat['p10'], digits)}–{fmt(stat['p90'], digits)})"
    return fmt(stat["median"], digits)


RESULTS_COLUMNS = [  # (header, field, digits)
    ("Total time (s)", "total_seconds", 1), ("Time/epoch (s)", "epoch_seconds", 2),
    ("Latency (ms/image, bs 1, median)", "latency_bs1", 2), ("Train loss", "train_loss", 4),
    ("Train acc %", "train_accuracy", 2), ("Test loss", "test_loss", 4), ("Test acc %", "test_accuracy", 2),
    ("Images/s", "images_per_second", 1)]


def row_stat(row, field):
    return row["latency_ms"].get(EAGER_BS1) if field == "latency_bs1" else row[field]


FACTS_COLUMNS = [  # (header, field, digits)
    ("Start-up (s)", "startup_seconds", 2), ("Warm-up (s)", "warmup_seconds", 2), ("Epoch 1 (s)", "epoch1_seconds", 2),
    ("Later epochs (s)", "later_epoch_seconds", 2), ("Empty sample (µs)", "empty_sample_us", 3),
    ("Training peak memory (MiB)", "peak_memory_mib", 0), ("Peak RSS (MiB)", "peak_rss_mib", 0)]


def breakdown_table_md(section):
    """Where a training step's time goes, per row with profiler traces; [] when no row has one."""
    def ms(value):
        return "n/a" if value is None else f"{value / 1000:.3f}"
    rows = [[LANGUAGE_NAMES[r["language"]], r["model"], r["mode"], ms(b["wall_us"]), ms(b["in_ops_us"]),
             ms(b["between_ops_us"]), f"{b['between_ops_us'] / b['wall_us']:.1%}", ms(b["device_busy_us"]),
             str(b["steps"])] for r in section["rows"] if (b := r["step_breakdown"])]
    if not rows:
        return []
    header = ["Language", "Model", "Mode", "Step (ms)", "In aten ops (ms)", "Between ops (ms)", "Between / step",
              "Device busy (ms)", "Steps traced"]
    return ["### Where a training step's time goes", ""] + markdown_table(header, rows) + [
        "", "From the profiler traces of `--trace-steps` (`suite/traces.py`), the median traced step: its wall time; "
        "the part inside aten ops (the union of the outermost ops on the trainer's threads); the host time between "
        "them (the interpreter or the C++ code, dispatch into the ops, the autograd engine between its nodes); and, "
        "on CUDA, the device's busy time (kernels and copies). The profiler's own cost is in every column.", ""]


def facts_table_md(section):
    header = ["Language", "Model", "Mode", "Precision"] + [h for h, _, _ in FACTS_COLUMNS]
    rows = [[LANGUAGE_NAMES[r["language"]], r["model"], r["mode"], r["precision_label"]]
            + [fmt_stat(r[f], d, r["runs"]) for _, f, d in FACTS_COLUMNS] for r in section["rows"]]
    return markdown_table(header, rows)


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return lines


def results_table_md(section):
    header = ["Language", "Model", "Mode", "Runs"] + [h for h, _, _ in RESULTS_COLUMNS]
    rows = [[LANGUAGE_NAMES[r["language"]], r["model"], r["mode"], r["runs"]]
            + [fmt_stat(row_stat(r, f), d, r["runs"]) for _, f, d in RESULTS_COLUMNS] for r in section["rows"]]
    return markdown_table(header, rows)


NOISY_MARK = "⚠ noisy"
ONE_RUN_MARK = "¹"


def ratio_cell(row, language):
    """A language's median (p10–p90) of the metric, marked when its IQR/median passes the noise threshold."""
    return fmt_stat(row[language], 3, 2) + (f" {NOISY_MARK}" if row[f"{language}_noisy"] else "")


def interval_cell(row):
    """The interval, marked when it rests on the samples of one run (run-to-run noise not in it)."""
    one_run = row["unit"] == stats.UNIT_SAMPLES and row["ratio_low"] is not None
    return row["interval"] + (f" {ONE_RUN_MARK}" if one_run else "")


def ratio_table_md(section, model):
    header = ["Mode", "Metric", "Python median (p10–p90)", "C++ median (p10–p90)", "Python / C++", "95% CI",
              "Verdict"]
    rows = [[r["mode"], r["metric"], ratio_cell(r, "python"), ratio_cell(r, "cpp"), fmt(r["ratio"], 3),
             interval_cell(r), r["verdict"]] for r in section["ratios"] if r["model"] == model]
    return markdown_table(header, rows)


def noisy_line(section, model):
    """One line naming every noisy cell of a model's ratio table; None when there is none."""
    cells = [f"{LANGUAGE_NAMES[language]} {model} {r['mode']} {r['metric']} {r[f'{language}_iqr_over_median']:.0%}"
             for r in section["ratios"] if r["model"] == model for language in LANGUAGES if r[f"{language}_noisy"]]
    if not cells:
        return None
    return f"Noisy (IQR/median > {stats.NOISY_IQR_OVER_MEDIAN:.0%}): " + ", ".join(cells) + "."


ONE_RUN_NOTE = (f"{ONE_RUN_MARK} Fewer than {stats.MIN_RUNS} runs on a side: the interval is over the pooled "
                "samples of the run(s), so run-to-run noise is not included (repeat with the suite's "
                f"--repeats {stats.MIN_RUNS} or more for an interval over runs).")


def ratio_notes(section, model):
    """The paragraphs under a model's ratio table: its noisy cells, and the one-run footnote where it applies."""
    notes = [noisy_line(section, model)]
    if any(ONE_RUN_MARK in interval_cell(r) for r in section["ratios"] if r["model"] == model):
        notes.append(ONE_RUN_NOTE)
    return [line for note in notes if note for line in (note, "")]


def latency_table_md(section):
    points = sorted({p for r in section["rows"] for p in r["latency_ms"]},
                    key=lambda p: (INFERENCE_PATHS.index(p[0]), p[1]))
    batch_sizes = sorted({bs for _, bs in points})
    header = ["Language", "Model", "Mode", "Path"] + [f"bs {bs}" for bs in batch_sizes]
    rows = []
    for r in section["rows"]:
        for path in dict.fromkeys(p for p, _ in points):
            cells = [r["latency_ms"].get((path, bs)) for bs in batch_sizes]
            if any(cells):
                rows.append([LANGUAGE_NAMES[r["language"]], r["model"], r["mode"], path]
                            + [f"{fmt(s['median'], 3)} ({fmt(s['p99'], 3)})" if s else "n/a" for s in cells])
    return markdown_table(header, rows)


def concurrency_table_md(section):
    counts = sorted({n for r in section["rows"] for n in r["concurrency"]})
    header = ["Language", "Model", "Mode"] + [f"{n} thread{'s' * (n > 1)}: images/s" for n in counts]
    rows = [[LANGUAGE_NAMES[r["language"]], r["model"], r["mode"]]
            + [fmt(r["concurrency"][n]["images_per_second"]["median"], 1) if n in r["concurrency"] else "n/a"
               for n in counts] for r in section["rows"] if r["concurrency"]]
    return markdown_table(header, rows)


def floor_table_md(section):
    header = ["Language", "Model", "Mode", "GFLOPs/image (inference / training)", "Peak (TFLOP/s)",
              "Floor s/epoch", "Epoch time × floor", "Floor latency bs 1 (ms)", "Latency bs 1 × floor"]
    rows = []
    for f in section["floor"]:
        gflops = f"{f['flops_per_image_inference'] / 1e9:.3f} / {f['flops_per_image_training'] / 1e9:.3f}"
        if f["peak_tflops"] is None:
            rows.append([LANGUAGE_NAMES[f["language"]], f["model"], f["mode"], gflops, f["peak_source"],
                         "n/a", "n/a", "n/a", "n/a"])
        else:
            rows.append([LANGUAGE_NAMES[f["language"]], f["model"], f["mode"], gflops,
                         f"{fmt(f['peak_tflops'], 1)} ({f['peak_source']})", fmt(f["floor_epoch_seconds"], 4),
                         fmt(f["epoch_multiple"], 1), fmt(f["floor_latency_bs1_ms"], 4),
                         fmt(f["latency_bs1_multiple"], 1)])
    return markdown_table(header, rows)


RATIO_EXPLANATION = [
    "Python / C++ (> 1: Python's number is larger): with "
    f"{stats.MIN_RUNS} or more runs per language, the ratio of the medians of the per-run medians; with fewer, of "
    "the medians of the pooled samples, which the median columns show for every row (so with repeats the ratio "
    "need not equal one column over the other). Time per epoch and images/s (train) use the steady-state epochs "
    "(2 and later of each run); epoch 1 and start-up (process start to the first training step) are rows of "
    "their own, one sample per run.",
    "",
    f"{stats.CONFIDENCE:.0%} CI: a percentile bootstrap (scipy.stats.bootstrap, {stats.BOOTSTRAP_RESAMPLES} "
    f"resamples) of that ratio, over the per-run medians when both languages have {stats.MIN_RUNS} or more runs "
    "(each run a fresh process), else over the pooled samples. A verdict names the faster language only where the "
    "interval excludes 1 and, over runs, the two-sided Mann-Whitney p over the per-run medians is at most "
    f"{VERDICT_P} (with few runs a bootstrap interval is narrower than its nominal level); otherwise: "
    f"{NO_DIFFERENCE}. {NOISY_MARK}: the cell's IQR/median passes {stats.NOISY_IQR_OVER_MEDIAN:.0%} (the level at "
    "which torch.utils.benchmark warns).",
    "",
]


TRACED_NOTE = ("**Traced runs** (`--trace-steps`): their times include the profiler's cost, which differs between "
               "the languages (Python's profiler turns every event into Python objects when it stops, inside the "
               "timed epoch when the trace ends before it): diagnostics, not benchmark numbers.")


def section_md(number, section, total_sections):
    lines = [f"## {'Section ' + str(number) + ': ' if total_sections > 1 else ''}Results", ""]
    if section["why_apart"]:
        lines += [section["why_apart"], ""]
    lines += [section["header"], "", "Files: " + ", ".join(f"`{p}`" for p in section["files"]), ""]
    if any(doc["config"].get("trace_steps") for docs, _ in section["runs"].values() for doc in docs):
        lines += [TRACED_NOTE, ""]
    lines += results_table_md(section)
    lines += ["", "Time/epoch and images/s are medians over the steady-state epochs (epochs 2 and later of each "
              "run; a run of one epoch gives its epoch 1), training only, evaluation excluded; with repeated runs "
              "every cell shows the median and, in brackets, p10–p90.", ""]
    lines += ["### Run facts", ""] + facts_table_md(section)
    lines += ["", "Precision: what the run computed (on CUDA, PyTorch's default \"fp32\" runs convolutions in TF32, "
              "in both languages). Start-up: process start to the model being ready (before the first training "
              "step; with --eval-only, the first inference); n/a for documents before schema version 4. Warm-up: "
              "untimed steps at every shape before the first clock read. Epoch 1 and the later epochs' median, "
              "apart. Empty sample: a synchronize and a clock read with no work (median), the floor under every "
              "latency sample. Training peak memory: the training window on CUDA (n/a on CPU). Peak RSS: the "
              "process's peak resident memory over the whole run (Python's idiomatic-pipeline worker processes not "
              "included; C++'s worker threads are).", ""]
    lines += breakdown_table_md(section)
    models = list(dict.fromkeys(r["model"] for r in section["ratios"]))
    lines += ["### Python / C++", ""]
    if not models:
        lines += ["No model has runs of both languages in this section.", ""]
    for model in models:
        lines += [f"**{model}**", ""] + ratio_table_md(section, model) + [""] + ratio_notes(section, model)
    if models:
        lines += RATIO_EXPLANATION
    lines += ["### Inference paths", ""] + latency_table_md(section)
    lines += ["", "Latency per forward (ms): median, and p99 in brackets, of every sample (pooled over repeated "
              "runs); each sample is one forward followed by a device synchronize.", ""]
    unavailable = sorted({u for r in section["rows"] for u in r["unavailable"]})
    if unavailable:
        lines += ["Not measured (the trainers said why): " + "; ".join(unavailable) + ".", ""]
    if any(r["concurrency"] for r in section["rows"]):
        lines += ["### Concurrent inference (batch 1, threads sharing one model)", ""] + concurrency_table_md(section)
        lines += ["", "Images/s over all threads (median over repeated runs). On CPU each thread runs with one "
                  "intra-op thread, so the comparison is about the interpreter (Python's GIL), not the thread "
                  "pool.", ""]
    lines += ["### Distance from the hardware floor", ""] + floor_table_md(section)
    lines += ["", "FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` on `bench.model.make_model` "
              "(a multiply-add counts 2; training = forward + backward). Floor = FLOPs / peak: the time at "
              "100 % of the peak, which no real run reaches.", ""]
    lines += ["### Plots", ""]
    for title, name in section["plots"].items():
        lines += [f"![{title}]({name})", ""]
    return lines


def hooked_runs_md(docs):
    """A loud note naming every run made with a trainer test hook set (results' test_hooks, schema 6): its numbers
    are no measurement (BENCH_ADD_MS_PER_STEP adds time that was never spent, a sleep slows a run on purpose)."""
    hooked = [f"`{Path(d['_path']).name}` ({', '.join(f'{k}={v}' for k, v in d['test_hooks'].items())})"
              for d in docs if d.get("test_hooks")]
    return [f"**HOOKED: not a measurement.** {len(hooked)} of {len(docs)} runs had a trainer test hook set: "
            + "; ".join(hooked) + ".", ""] if hooked else []


def report_md(sections, notes=()):
    lines = ["# torch-api-bench report", "", *notes]
    if len(sections) > 1:
        lines += [f"The results files form {len(sections)} groups that are not comparable; each has its own "
                  "section.", ""]
    for i, section in enumerate(sections, 1):
        lines += section_md(i, section, len(sections))
    return "\n".join(lines)


def stat_columns(prefix, stat):
    stat = stat or {}
    return {f"{prefix}": stat.get("median"), f"{prefix}_p10": stat.get("p10"), f"{prefix}_p90": stat.get("p90")}


def results_csv_rows(sections):
    out = []
    for i, section in enumerate(sections, 1):
        for r in section["rows"]:
            row = {"section": i, "language": r["language"], "model": r["model"], "mode": r["mode"],
                   "runs": r["runs"]}
            for _, field, _ in RESULTS_COLUMNS:
                row.update(stat_columns(field, row_stat(r, field)))
            out.append(row)
    return out


# A ratio row's values that the CSV takes as they are. p_greater / p_less: one-sided Mann-Whitney p-values that
# Python's values (per-run medians, or samples: unit) are larger / smaller than C++'s.
RATIO_VALUES = ["ratio", "spread", "ratio_low", "ratio_high", "p_greater", "p_less", "unit", "n_python", "n_cpp",
                "verdict", "python_iqr_over_median", "python_noisy", "cpp_iqr_over_median", "cpp_noisy"]
RATIOS_FIELDS = ["section", "model", "mode", "metric", "python", "python_p10", "python_p90", "cpp", "cpp_p10",
                 "cpp_p90"] + RATIO_VALUES


def ratios_csv_rows(sections):
    return [{"section": i, "model": r["model"], "mode": r["mode"], "metric": r["metric"],
             **stat_columns("python", r["python"]), **stat_columns("cpp", r["cpp"]), **{f: r[f] for f in RATIO_VALUES}}
            for i, section in enumerate(sections, 1) for r in section["ratios"]]


LATENCY_FIELDS = ["section", "language", "model", "mode", "path", "batch_size", "median_ms", "p10_ms", "p90_ms",
                  "p99_ms", "samples"]
CONCURRENCY_FIELDS = ["section", "language", "model", "mode", "threads", "images_per_second",
                      "images_per_second_p10", "images_per_second_p90", "runs", "latency_median_ms", "latency_p99_ms"]


def latency_csv_rows(sections):
    return [{"section": i, "language": r["language"], "model": r["model"], "mode": r["mode"], "path": path,
             "batch_size": bs, "median_ms": s["median"], "p10_ms": s["p10"], "p90_ms": s["p90"], "p99_ms": s["p99"],
             "samples": s["n"]}
            for i, section in enumerate(sections, 1) for r in section["rows"]
            for (path, bs), s in r["latency_ms"].items()]


def concurrency_csv_rows(sections):
    rows = []
    for i, section in enumerate(sections, 1):
        for r in section["rows"]:
            for n, c in r["concurrency"].items():
                ips, lat = c["images_per_second"], c["latency_ms"]
                rows.append({"section": i, "language": r["language"], "model": r["model"], "mode": r["mode"],
                             "threads": n, "images_per_second": ips["median"], "images_per_second_p10": ips["p10"],
                             "images_per_second_p90": ips["p90"], "runs": ips["n"],
                             "latency_median_ms": lat["median"], "latency_p99_ms": lat["p99"]})
    return rows


def write_csv(path, rows, fieldnames=None):
    """Header even when there are no rows, so that readers of the file need no special case."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames or (list(rows[0]) if rows else []))
        writer.writeheader()
        writer.writerows(rows)


def report_json(sections):
    """Everything but the raw documents; latency keys become strings because JSON keys must be."""
    def clean(row):
        return {**row, "latency_ms": {f"{path}/bs{bs}": s for (path, bs), s in row["latency_ms"].items()},
                "concurrency": {str(n): c for n, c in row["concurrency"].items()}}
    return {"sections": [{"key": s["key"], "why_apart": s["why_apart"], "header": s["header"],
                          "files": s["files"], "results": [clean(r) for r in s["rows"]], "ratios": s["ratios"],
                          "floor": s["floor"], "plots": s["plots"]} for s in sections]}


# ---------------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------------

def load_all(paths):
    docs = []
    for path in paths:
        doc = load_results(path)  # raises ResultsError naming the file
        doc["_path"] = str(path)
        docs.append(doc)
    return docs


def sweep_md(path, out_dir):
    """The crossover section from a suite.sweep result (sweep.json), its plot redrawn into `out_dir`."""
    from suite import sweep

    try:
        result = json.loads(Path(path).read_text())
        sweep.plot(result["tables"], out_dir / "crossover.png")
        return ["", "## The crossover: Python / C++ by batch size (suite.sweep)", "",
                f"From `{path}`.", ""] + sweep.markdown(result)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ResultsError(f"{path}: not a suite.sweep result ({err!r})") from None


def build_report(paths, out_dir, peak_tflops=None, sweep=None):
    """Write the report for `paths` (and the crossover of `sweep`, a sweep.json) into `out_dir`; return the path
    of report.md."""
    if not paths:
        raise ResultsError("no results files given")
    docs = load_all(paths)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = group_documents(docs)
    fields = differing_fields([key for key, _ in groups])
    sections = []
    for i, (key, group_docs) in enumerate(groups, 1):
        section = build_section(key, group_docs, fields, peak_tflops)
        section["plots"] = write_plots(section, out_dir, f"section{i}_" if len(groups) > 1 else "")
        sections.append(section)
    write_csv(out_dir / "results_table.csv", results_csv_rows(sections))
    write_csv(out_dir / "ratios.csv", ratios_csv_rows(sections), RATIOS_FIELDS)
    write_csv(out_dir / "latency.csv", latency_csv_rows(sections), LATENCY_FIELDS)
    write_csv(out_dir / "concurrency.csv", concurrency_csv_rows(sections), CONCURRENCY_FIELDS)
    with open(out_dir / "report.json", "w") as f:
        json.dump(report_json(sections), f, indent=1)
        f.write("\n")
    md = out_dir / "report.md"
    md.write_text(report_md(sections, hooked_runs_md(docs)) + ("\n".join(sweep_md(sweep, out_dir)) if sweep else "")
                  + "\n")
    return md


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description="Build the report (Markdown, PNG, CSV, JSON) from "
                                "results files of bench.train / bench_train.")
    p.add_argument("results", nargs="+", help="results JSON files")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="device peak in TFLOP/s for the floor (default: the known-GPU table; none for CPUs)")
    p.add_argument("--sweep", default=None, help="add the crossover of this suite.sweep result (DIR/sweep.json)")
    args = p.parse_args(argv)
    if args.peak_tflops is not None and not args.peak_tflops > 0:
        p.error("--peak-tflops must be > 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        md = build_report(args.results, args.out, args.peak_tflops, args.sweep)
    except ResultsError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
