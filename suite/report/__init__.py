"""The report: results documents (schema/results.schema.json) in; tables, Python / C++ ratios with their 95%
intervals, the hardware floor and plots out.

    python -m suite.report RESULTS... --out DIR [--peak-tflops X] [--sweep SWEEP_DIR/sweep.json]

Writes DIR/report.md (tables, linked PNGs), DIR/report.json and the tables as CSV (results_table, ratios,
latency, concurrency). Runs of one configuration are aggregated; runs that are not comparable (other dataset,
config or hardware) go to sections of their own that say what differs.

By concern: samples.py, the data model (RunSamples: samples grouped by run) that suite/metrics.py, the gate
and the sweep share; sections.py, grouping documents into sections and rows; compare.py, the ratios, verdicts
and the floor; markdown.py with report.md.tmpl, plots.py and tables.py (CSV, JSON), the renderers; cli.py.
"""


def __getattr__(name):
    # The renderers import matplotlib: loaded when the report is built, not when the gate imports the data model.
    if name in ("build_report", "main"):
        from suite.report import cli

        return getattr(cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
