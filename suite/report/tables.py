"""The report's machine-readable outputs: report.json (everything but the raw documents) and the tables as CSV
(results_table, ratios, latency, concurrency). A quantity is written as its summary: median, p10, p90, p99, n."""

import csv
import json

from suite.report.sections import RESULTS_COLUMNS, row_samples


def summary(samples):
    return samples.summary() if samples is not None else None


def ratio_record(c):
    """A Compared as the flat record of ratios.csv and report.json. p_greater / p_less: one-sided Mann-Whitney
    p-values that Python's values (per-run medians, or samples: unit) are larger / smaller than C++'s."""
    r, cmp = c.ratio, c.ratio.comparison
    py, cpp = r.python.summary(), r.cpp.summary()
    return {"mode": c.mode, "model": c.model, "metric": c.metric, "python": py, "cpp": cpp, "ratio": cmp.ratio,
            "spread": max(py["p90"] - py["p10"], cpp["p90"] - cpp["p10"]),  # the wider p10-p90
            "ratio_low": cmp.low, "ratio_high": cmp.high, "interval": cmp.interval_text(3),
            "p_greater": cmp.p_greater, "p_less": cmp.p_less, "unit": cmp.unit, "n_python": cmp.n_a,
            "n_cpp": cmp.n_b, "runs_python": r.python.n_runs, "runs_cpp": r.cpp.n_runs, "verdict": r.verdict,
            "python_iqr_over_median": r.python.iqr_over_median, "python_noisy": r.python.noisy,
            "cpp_iqr_over_median": r.cpp.iqr_over_median, "cpp_noisy": r.cpp.noisy}


def row_record(r):
    """A Row as report.json's record; latency keys become strings because JSON keys must be."""
    return {"mode": r.mode, "language": r.language, "model": r.model, "runs": r.runs,
            **{name: summary(samples) for name, samples in r.values.items()},
            "latency_ms": {f"{path}/bs{bs}": summary(s) for (path, bs), s in r.latency_ms.items()},
            "concurrency": {str(n): {k: summary(s) for k, s in c.items()} for n, c in r.concurrency.items()},
            "unavailable": r.unavailable, "precision_label": r.precision_label, "step_breakdown": r.step_breakdown}


def report_json(sections):
    return {"sections": [{"key": s.key, "why_apart": s.why_apart, "header": s.header, "files": s.files,
                          "results": [row_record(r) for r in s.rows], "ratios": [ratio_record(c) for c in s.ratios],
                          "floor": s.floor, "plots": s.plots} for s in sections]}


def stat_columns(prefix, stat):
    stat = stat or {}
    return {prefix: stat.get("median"), f"{prefix}_p10": stat.get("p10"), f"{prefix}_p90": stat.get("p90")}


def results_rows(sections):
    def columns(r):
        return {k: v for _, name, _ in RESULTS_COLUMNS
                for k, v in stat_columns(name, summary(row_samples(r, name))).items()}
    return [{"section": i, "language": r.language, "model": r.model, "mode": r.mode, "runs": r.runs, **columns(r)}
            for i, s in enumerate(sections, 1) for r in s.rows]


RATIO_VALUES = ["ratio", "spread", "ratio_low", "ratio_high", "p_greater", "p_less", "unit", "n_python", "n_cpp",
                "runs_python", "runs_cpp", "verdict", "python_iqr_over_median", "python_noisy", "cpp_iqr_over_median",
                "cpp_noisy"]
RATIOS_FIELDS = ["section", "model", "mode", "metric", "python", "python_p10", "python_p90", "cpp", "cpp_p10",
                 "cpp_p90"] + RATIO_VALUES


def ratios_rows(sections):
    return [{"section": i, "model": rec["model"], "mode": rec["mode"], "metric": rec["metric"],
             **stat_columns("python", rec["python"]), **stat_columns("cpp", rec["cpp"]),
             **{f: rec[f] for f in RATIO_VALUES}}
            for i, s in enumerate(sections, 1) for rec in map(ratio_record, s.ratios)]


LATENCY_FIELDS = ["section", "language", "model", "mode", "path", "batch_size", "median_ms", "p10_ms", "p90_ms",
                  "p99_ms", "samples"]
CONCURRENCY_FIELDS = ["section", "language", "model", "mode", "threads", "images_per_second",
                      "images_per_second_p10", "images_per_second_p90", "runs", "latency_median_ms", "latency_p99_ms"]


def latency_rows(sections):
    return [{"section": i, "language": r.language, "model": r.model, "mode": r.mode, "path": path, "batch_size": bs,
             "median_ms": s.median, "p10_ms": s.percentile(10), "p90_ms": s.percentile(90),
             "p99_ms": s.percentile(99), "samples": s.pooled.size}
            for i, section in enumerate(sections, 1) for r in section.rows for (path, bs), s in r.latency_ms.items()]


def concurrency_rows(sections):
    rows = []
    for i, section in enumerate(sections, 1):
        for r in section.rows:
            for n, c in r.concurrency.items():
                ips, lat = c["images_per_second"], c["latency_ms"]
                rows.append({"section": i, "language": r.language, "model": r.model, "mode": r.mode, "threads": n,
                             "images_per_second": ips.median, "images_per_second_p10": ips.percentile(10),
                             "images_per_second_p90": ips.percentile(90), "runs": ips.pooled.size,
                             "latency_median_ms": lat.median, "latency_p99_ms": lat.percentile(99)})
    return rows


def write_csv(path, rows, fieldnames=None):
    """Header even when there are no rows, so that readers of the file need no special case."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames or (list(rows[0]) if rows else []))
        writer.writeheader()
        writer.writerows(rows)


def write_tables(sections, out_dir):
    write_csv(out_dir / "results_table.csv", results_rows(sections))
    write_csv(out_dir / "ratios.csv", ratios_rows(sections), RATIOS_FIELDS)
    write_csv(out_dir / "latency.csv", latency_rows(sections), LATENCY_FIELDS)
    write_csv(out_dir / "concurrency.csv", concurrency_rows(sections), CONCURRENCY_FIELDS)
    with open(out_dir / "report.json", "w") as f:
        json.dump(report_json(sections), f, indent=1)
        f.write("\n")
