"""The report's command line: results documents in, report.md, its PNGs, report.json and the CSV tables out."""

import argparse
import json
import sys
from pathlib import Path

from suite import dist
from suite.report import compare, markdown, plots, tables
from suite.report.sections import build_sections, trace_file
from suite.schema import ResultsError, load_results

PROG = "suite.report"


def load_all(paths):
    docs = []
    for path in paths:
        doc = load_results(path)  # raises ResultsError naming the file
        doc["_path"] = str(path)
        docs.append(doc)
    return docs


def load_sweep(path):
    """A suite.experiments.sweep result (sweep.json)."""
    try:
        result = json.loads(Path(path).read_text())
        compare.sweep_ratios(result["runs"])
        return result
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ResultsError(f"{path}: not a sweep result ({err!r})") from None


def build_report(paths, out_dir, peak_tflops=None, sweep=None):
    """Write the report for `paths` (and the crossover of `sweep`, a sweep.json) into `out_dir`; return the path
    of report.md."""
    if not paths:
        raise ResultsError("no results files given")
    docs = load_all(paths)
    sweep_result = load_sweep(sweep) if sweep else None
    sections = build_sections(docs, peak_tflops)  # reads traces too: every error before anything is written
    scaling = dist.scaling_rows(docs, trace_file)  # torchrun jobs' results, across sections; [] without any
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, section in enumerate(sections, 1):
        section.plots = plots.write_plots(section, out_dir, f"section{i}_" if len(sections) > 1 else "")
    tables.write_tables(sections, out_dir)
    sweep_md = None
    if sweep_result:
        plots.plot_crossover(compare.sweep_ratios(sweep_result["runs"]), out_dir / "crossover.png")
        sweep_md = markdown.sweep_md(sweep_result, sweep)
    if scaling:
        plots.plot_scaling(scaling, out_dir / "scaling.png")
    md = out_dir / "report.md"
    md.write_text(markdown.report_md(sections, sweep_md, markdown.scaling_md(scaling)))
    return md


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description="Build the report (Markdown, PNG, CSV, JSON) from "
                                "results files of bench.train / bench_train.")
    p.add_argument("results", nargs="+", help="results JSON files")
    p.add_argument("--out", help="output folder (created if missing)")
    p.add_argument("--headline", action="store_true",
                   help="print the README headline rows of one configuration's runs instead")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="device peak in TFLOP/s for the floor (default: the known-GPU table; none for CPUs)")
    p.add_argument("--sweep", default=None,
                   help="add the crossover of this suite.experiments.sweep result (DIR/sweep.json)")
    args = p.parse_args(argv)
    if not args.out and not args.headline:
        p.error("--out is required (or --headline)")
    if args.peak_tflops is not None and not args.peak_tflops > 0:
        p.error("--peak-tflops must be > 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.headline:
            from suite.report.headline import headline_rows

            print("\n".join(headline_rows(load_all(args.results))))
        else:
            print(build_report(args.results, args.out, args.peak_tflops, args.sweep))
    except ResultsError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    return 0
