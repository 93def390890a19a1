"""The README's headline: the Python/C++ ratios of one benchmark run (one model, one mode, runs of both languages),
rendered as the Markdown rows README.md holds between its headline markers.

    python -m suite.report RESULTS... --headline

tests/test_report.py checks that README.md's rows are what this gives for the committed results it links.
"""

from suite.report.markdown import fmt
from suite.report.sections import build_sections
from suite.schema import ResultsError

# (the README's name for a quantity, the report's, digits)
ROWS = [("training step (steady state, ms)", "training step (ms)", 1), ("epoch 1 (s)", "epoch 1 (s)", 2),
        ("start-up (s)", "start-up (s)", 2), ("latency, batch 1 (ms)", "latency eager bs=1 (ms/batch)", 2),
        ("peak memory (RSS, MiB)", "peak RSS (MiB)", 0)]
HEADER = ["quantity", "Python (median of runs)", "C++ (median of runs)", "Python / C++ (95% CI)", "verdict"]


def headline_rows(docs):
    """The headline table's Markdown lines for these documents: the runs of one configuration (one report section,
    one model and mode), both languages."""
    sections = build_sections(docs)
    rows = [(r.model, r.mode, r.language) for section in sections for r in section.rows]
    if len(rows) != 2 or len({row[:2] for row in rows}) != 1:
        raise ResultsError(f"the headline needs runs of one model and mode in both languages; these give "
                           f"{', '.join(' '.join(row) for row in rows)}")
    ratios = {c.metric: c.ratio for c in sections[0].ratios}
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for name, key, digits in ROWS:
        r = ratios.get(key)
        if r is None:
            lines.append(f"| {name} | not measured | not measured | | |")
            continue
        c = r.comparison
        lines.append(f"| {name} | {fmt(r.python.median_of_runs, digits)} | {fmt(r.cpp.median_of_runs, digits)} | "
                     f"{c.ratio:.3f} ({c.interval_text(3)}) | {r.verdict} |")
    return lines
