"""report.md: the blocks of report.md.tmpl (string.Template), each filled by one function of this module.

A section of the report is a list of blocks (SECTION_BLOCKS); each block's function takes the Section and returns
the block's values, or None to leave the block out. Adding a part to every section is one function here and one
block in the template.
"""

import re
from functools import cache
from pathlib import Path
from string import Template

from bench.vocab import INFERENCE_PATHS, LANGUAGES
from suite import metrics, process, stats
from suite.report import compare
from suite.report.sections import FACTS_COLUMNS, LANGUAGE_NAMES, RESULTS_COLUMNS, row_samples

TEMPLATE = Path(__file__).with_name("report.md.tmpl")
NOISY_MARK = "⚠ noisy"
ONE_RUN_MARK = "¹"


@cache
def blocks():
    """{name: Template} from the template file, whose blocks each start with a line `<!-- name -->`."""
    parts = re.split(r"^<!-- (\w+) -->\n", TEMPLATE.read_text(), flags=re.M)
    return {name: Template(text.strip("\n")) for name, text in zip(parts[1::2], parts[2::2])}


def fill(name, **values):
    """A block with its values; blank lines left by empty values fold into one."""
    text = blocks()[name].substitute(values)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def fmt(value, digits=2):
    return "n/a" if value is None else f"{value:,.{digits}f}"


def cell(samples, digits=2, spread=False):
    """The median; with `spread`, p10–p90 too, so that a reader sees how much runs disagree."""
    if not samples:
        return "n/a"
    median = fmt(samples.median, digits)
    return f"{median} ({fmt(samples.percentile(10), digits)}–{fmt(samples.percentile(90), digits)})" if spread \
        else median


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def row_head(r):
    return [LANGUAGE_NAMES[r.language], r.model, r.mode]


# ---------------------------------------------------------------------------------------------------------
# One function per block of a section
# ---------------------------------------------------------------------------------------------------------

def results(section):
    header = ["Language", "Model", "Mode", "Runs"] + [h for h, _, _ in RESULTS_COLUMNS]
    return {"table": table(header, [row_head(r) + [r.runs] + [cell(row_samples(r, f), d, r.runs > 1)
                                                              for _, f, d in RESULTS_COLUMNS] for r in section.rows])}


def facts(section):
    header = ["Language", "Model", "Mode", "Precision"] + [h for h, _, _ in FACTS_COLUMNS]
    return {"table": table(header, [row_head(r) + [r.precision_label] + [cell(r.values[f], d, r.runs > 1)
                                                                          for _, f, d in FACTS_COLUMNS]
                                    for r in section.rows])}


def process_state(section):
    """The process section (schema version 6) per row, and for each model and mode whether the Python run's process
    state differs from its C++ counterpart's (suite/process.py; repeats paired in order); None without one."""
    rows = [r for r in section.rows if "process" in r.docs[0]]
    if not rows:
        return None

    def cells(r):
        p = r.docs[0]["process"]
        gc = p["gc"]
        return row_head(r) + [
            len(p["libraries"]), ", ".join(x.rsplit("/", 1)[-1] for x in process.openmp_runtimes(p)),
            (p["memory"]["malloc"] or "?").rsplit("/", 1)[-1],
            ",".join(map(str, sorted({s["intra_op_threads"] for s in p["windows"].values()}))), p["interop_threads"],
            p["placement"]["affinity"], f"{p['flags']['denormals_flushed']:.0%}", p["memory"]["thp_enabled"] or "n/a",
            p["build"]["build_type"] + (" fast-math" if p["build"]["fast_math"] else ""),
            "n/a" if gc is None else f"{sum(gc['collections_in_windows'])} ({gc['seconds_in_windows']:.3f} s)",
            ", ".join(f"{k}={v}" for k, v in metrics.hooks_set_in(r.docs).items()) or "none"]  # any repeat's
    header = ["Language", "Model", "Mode", "Libraries", "OpenMP", "malloc", "Intra-op threads", "Inter-op threads",
              "Affinity", "Denormals flushed", "THP", "Build", "GC in windows", "Test hooks"]
    by_key, allow, verdicts = {(r.mode, r.model, r.language): r for r in rows}, process.load_allow_list(), []
    for (mode, model, language), r in by_key.items():
        if language != "python" or (mode, model, "cpp") not in by_key:
            continue
        pairs = list(zip(r.docs, by_key[(mode, model, "cpp")].docs))
        diffs = list({repr(d): d for py, cpp in pairs for d in process.compare_documents(py, cpp, allow)}.values())
        verdict = "the same process state outside the allow-list" if not diffs else \
            f"**process state differs**: {len(diffs)} difference(s) over {len(pairs)} pair(s) of runs " \
            "(`python -m suite.process PYTHON.json CPP.json`)"
        verdicts.append(f"- {model}, {mode}: Python vs C++: {verdict}")
        verdicts += [f"  - `{d.key}`: Python {process.short(d.python)}, C++ {process.short(d.cpp)}"
                     + (f" ({d.why})" if d.why else "") for d in diffs[:10]]
    return {"table": table(header, [cells(r) for r in rows]), "verdicts": "\n".join(verdicts)}


def breakdown(section):
    def ms(value):
        return "n/a" if value is None else f"{value / 1000:.3f}"
    rows = [row_head(r) + [ms(b["wall_us"]), ms(b["in_ops_us"]), ms(b["between_ops_us"]),
                           f"{b['between_ops_us'] / b['wall_us']:.1%}", ms(b["device_busy_us"]), str(b["steps"])]
            for r in section.rows if (b := r.step_breakdown)]
    if not rows:
        return None
    return {"table": table(["Language", "Model", "Mode", "Step (ms)", "In aten ops (ms)", "Between ops (ms)",
                            "Between / step", "Device busy (ms)", "Steps traced"], rows)}


def ratio_cell(samples):
    """A language's median (p10–p90), marked when its IQR/median passes the noise threshold."""
    return cell(samples, 3, spread=True) + (f" {NOISY_MARK}" if samples.noisy else "")


def over_one_run(r):
    """Whether the interval rests on the pooled samples of fewer runs than an interval over runs needs."""
    return r.comparison.unit == stats.UNIT_SAMPLES and r.comparison.low is not None


def ratio_model(section, model):
    """One model's ratio table, then its noisy cells and the one-run footnote where they apply."""
    compared = [c for c in section.ratios if c.model == model]
    rows = [[c.mode, c.metric, ratio_cell(c.ratio.python), ratio_cell(c.ratio.cpp), fmt(c.ratio.comparison.ratio, 3),
             c.ratio.comparison.interval_text(3) + (f" {ONE_RUN_MARK}" if over_one_run(c.ratio) else ""),
             c.ratio.verdict] for c in compared]
    header = ["Mode", "Metric", "Python median (p10–p90)", "C++ median (p10–p90)", "Python / C++", "95% CI", "Verdict"]
    noisy = [f"{LANGUAGE_NAMES[lang]} {model} {c.mode} {c.metric} {getattr(c.ratio, lang).iqr_over_median:.0%}"
             for c in compared for lang in LANGUAGES if getattr(c.ratio, lang).noisy]
    noisy_line = fill("noisy", noisy_level=f"{stats.NOISY_IQR_OVER_MEDIAN:.0%}", cells=", ".join(noisy)) \
        if noisy else ""
    one_run = fill("one_run", mark=ONE_RUN_MARK, min_runs=stats.MIN_RUNS_FOR_RUN_INTERVAL) \
        if any(over_one_run(c.ratio) for c in compared) else ""
    return fill("ratio_model", model=model, table=table(header, rows), noisy=noisy_line, one_run=one_run)


def ratios(section):
    models = list(dict.fromkeys(c.model for c in section.ratios))
    return {"models": "\n\n".join(ratio_model(section, m) for m in models),
            "min_runs": stats.MIN_RUNS_FOR_RUN_INTERVAL, "resamples": stats.BOOTSTRAP_RESAMPLES,
            "verdict_p": compare.VERDICT_P, "noisy_mark": NOISY_MARK,
            "noisy_level": f"{stats.NOISY_IQR_OVER_MEDIAN:.0%}"} if models else None


def no_ratios(section):
    return None if section.ratios else {}


def latency(section):
    points = sorted({p for r in section.rows for p in r.latency_ms}, key=lambda p: (INFERENCE_PATHS.index(p[0]), p[1]))
    batch_sizes = sorted({bs for _, bs in points})
    rows = []
    for r in section.rows:
        for path in dict.fromkeys(p for p, _ in points):
            cells = [r.latency_ms.get((path, bs)) for bs in batch_sizes]
            if any(cells):
                rows.append(row_head(r) + [path] + [f"{fmt(s.median, 3)} ({fmt(s.percentile(99), 3)})" if s else "n/a"
                                                    for s in cells])
    unavailable = sorted({u for r in section.rows for u in r.unavailable})
    return {"table": table(["Language", "Model", "Mode", "Path"] + [f"bs {bs}" for bs in batch_sizes], rows),
            "unavailable": fill("unavailable", reasons="; ".join(unavailable)) if unavailable else ""}


def concurrency(section):
    counts = sorted({n for r in section.rows for n in r.concurrency})
    if not counts:
        return None
    header = ["Language", "Model", "Mode"] + [f"{n} thread{'s' * (n > 1)}: images/s" for n in counts]
    return {"table": table(header, [row_head(r) + [fmt(r.concurrency[n]["images_per_second"].median, 1)
                                                   if n in r.concurrency else "n/a" for n in counts]
                                    for r in section.rows if r.concurrency])}


def floor(section):
    rows = []
    for f in section.floor:
        head = [LANGUAGE_NAMES[f["language"]], f["model"], f["mode"],
                f"{f['flops_per_image_inference'] / 1e9:.3f} / {f['flops_per_image_training'] / 1e9:.3f}"]
        if f["peak_tflops"] is None:
            rows.append(head + [f["peak_source"], "n/a", "n/a", "n/a", "n/a"])
        else:
            rows.append(head + [f"{fmt(f['peak_tflops'], 1)} ({f['peak_source']})", fmt(f["floor_epoch_seconds"], 4),
                                fmt(f["epoch_multiple"], 1), fmt(f["floor_latency_bs1_ms"], 4),
                                fmt(f["latency_bs1_multiple"], 1)])
    return {"table": table(["Language", "Model", "Mode", "GFLOPs/image (inference / training)", "Peak (TFLOP/s)",
                            "Floor s/epoch", "Epoch time × floor", "Floor latency bs 1 (ms)", "Latency bs 1 × floor"],
                           rows)}


def plots(section):
    return {"images": "\n\n".join(f"![{title}]({name})" for title, name in section.plots.items())}


def section_head(section, number, total):
    return {"number": f"Section {number}: " if total > 1 else "", "why_apart": section.why_apart,
            "header": section.header, "files": ", ".join(f"`{p}`" for p in section.files)}


# The blocks of every section, in order; the notes its runs call for (sections.RUN_NOTES) follow its head.
SECTION_BLOCKS = [results, facts, process_state, breakdown, ratios, no_ratios, latency, concurrency, floor, plots]


def section_md(section, number, total):
    parts = [fill("section", **section_head(section, number, total))]
    parts += [fill(note) for note in section.notes]
    parts += [fill(block.__name__, **values) for block in SECTION_BLOCKS if (values := block(section)) is not None]
    return "\n\n".join(parts)


def report_md(sections, sweep=None, scaling=None):
    """The whole report; `sweep` and `scaling`: the sweep's and the data-parallel scaling's sections' Markdown,
    appended (they compare across sections: batch sizes, world sizes)."""
    groups = fill("groups", count=len(sections)) if len(sections) > 1 else ""
    parts = [fill("report", groups=groups)] + [section_md(s, i, len(sections)) for i, s in enumerate(sections, 1)]
    return "\n\n".join(parts + [part for part in (sweep, scaling) if part]) + "\n"


# ---------------------------------------------------------------------------------------------------------
# The sweep's section (suite/experiments/sweep.py writes it as sweep.md; the report's --sweep appends it)
# ---------------------------------------------------------------------------------------------------------

def sweep_metric(metric, by_batch_size):
    rows = []
    for bs, r in sorted(by_batch_size.items()):
        if r is None:
            rows.append([bs, "", "", "", "", "", "n/a: a language has no run"])
            continue
        c = r.comparison
        rows.append([bs, f"{r.python.median_of_runs:.3f}", f"{r.cpp.median_of_runs:.3f}", f"{c.ratio:.3f}",
                     c.interval_text(3), f"{r.p_two_sided:.3g}", r.verdict])
    below = compare.crossover(by_batch_size)
    return fill("sweep_metric", title=compare.SWEEP_METRICS[metric], table=table(
        ["Batch size", "Python (ms)", "C++ (ms)", "Python / C++", "95% CI", "p (two-sided)", "Verdict"], rows),
        crossover=fill("crossover", batch_size=below) if below else fill("no_crossover"))


def sweep_md(result, source, plot_name="crossover.png"):
    """The sweep's section from sweep.json's content; `source`: the file it came from."""
    args = result["args"]
    startup = [[lang] + ["n/a" if (f := facts[k]) is None else f"{f['median']:.2f} ({f['min']:.2f}–{f['max']:.2f})"
                         for k in ("to_first_step_s", "to_first_inference_s", "peak_rss_mib")]
               for lang, facts in result["startup"].items()]
    return fill("sweep", source=f"From `{source}`.", plot=plot_name, **{k: args[k] for k in (
        "model", "device", "repeats", "steps", "latency_iters")},
        metrics="\n\n".join(sweep_metric(m, by_bs) for m, by_bs in compare.sweep_ratios(result["runs"]).items()),
        startup=table(["Language", "Process start to first training step (s)", "to first inference (s)",
                       "Peak RSS (MiB)"], startup),
        failures=fill("failures", failures="; ".join(result["failures"])) if result["failures"] else "")


# ---------------------------------------------------------------------------------------------------------
# Data-parallel scaling (torchrun jobs' results: suite/dist.py scaling_rows)
# ---------------------------------------------------------------------------------------------------------

def sig3(value, scale=1.0):
    """Three significant digits, never in exponent form; — for none."""
    if value is None:
        return "—"
    value *= scale
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def scaling_table(rows):
    return table(["Language", "Model", "Grad sync", "Ranks", "Threads/rank", "Per-rank batch",
                  "Job step ms (p10–p90)", "Global images/s", "Weak-scaling efficiency", "Exposed comm ms",
                  "Allreduce ms (traced)", "Runs"],
                 [[LANGUAGE_NAMES[r["language"]], r["model"], r["grad_sync"], r["world_size"], r["threads"],
                   r["per_rank_batch_size"],
                   f"{sig3(r['step_median_s'], 1e3)} ({sig3(r['step_p10_s'], 1e3)}–{sig3(r['step_p90_s'], 1e3)})",
                   sig3(r["images_per_second"]), sig3(r["efficiency"]), sig3(r["exposed_comm_s"], 1e3),
                   sig3(r["allreduce_s"], 1e3), r["runs"]] for r in rows])


def scaling_md(rows, plot_name="scaling.png"):
    """The data-parallel scaling section, or None without distributed runs."""
    return fill("scaling", table=scaling_table(rows), plot=plot_name) if rows else None
