"""The crossover: training-step time and inference latency of both languages over batch sizes, with the
Python / C++ ratio's confidence band, and the batch size below which C++ is measurably faster, if any. Then
start-up and footprint: process start to the first training step and to the first inference, peak memory.

    python -m suite.experiments.sweep --out DIR [--batch-sizes 1,2,4,...,256] [--repeats 4] [--model resnet18]
                          [--device auto] [--steps 4] [--latency-iters 20] [--threads 0] [--data DIR]
                          [--build-dir DIR] [--resume]

Every run is a fresh trainer process; the languages alternate (python, cpp, then cpp, python on the next
repeat) at each batch size, and the batch sizes are swept once per repeat, so that a drift of the machine's
speed falls on both languages and every batch size alike. A run trains 2 epochs of --steps steps at its batch
size; its training-step sample is the steady-state epoch (epoch 2) over its steps, its latency samples are its
eager latency at that batch size. The report's comparisons (suite/report/compare.py) judge the languages per
batch size, over per-run medians from 4 runs a side, and its renderers draw DIR/sweep.md and DIR/crossover.png,
as `python -m suite.report ... --sweep DIR/sweep.json` draws the same section. Writes DIR/sweep.json, those two
and every run's results in DIR/results/. DIR/sweep.json is written after every repeat too ("complete": false
until the end), so a sweep cut off keeps its finished repeats; --resume reuses the runs whose results are
already in DIR/results/ (a sweep cut off goes on where it stopped).
"""

import argparse
import json
import sys
from pathlib import Path

from bench.vocab import DEVICES, LANGUAGES, MODELS
from suite import harness as H
from suite import metrics
from suite.report import compare, markdown, plots
from suite.report.samples import RunSamples
from suite.schema import ResultsError, load_results

PROG = "suite.experiments.sweep"
DEFAULT_BATCH_SIZES = "1,2,4,8,16,32,64,128,256"
LR = 0.01  # small enough that batch 1 does not diverge in a few steps; the same in both languages


def parse_args(argv):
    p = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--batch-sizes", default=DEFAULT_BATCH_SIZES, help=f"(default {DEFAULT_BATCH_SIZES})")
    p.add_argument("--repeats", type=int, default=4, help="runs per language and batch size (default 4)")
    p.add_argument("--model", default="resnet18", choices=list(MODELS))
    p.add_argument("--device", default="auto", choices=list(DEVICES))
    p.add_argument("--steps", type=int, default=4, help="training steps per epoch (default 4)")
    p.add_argument("--latency-iters", type=int, default=20, help="latency samples per run (default 20)")
    p.add_argument("--threads", type=int, default=0, help="CPU intra-op threads (default 0: torch's)")
    p.add_argument("--startup-runs", type=int, default=4,
                   help="--eval-only runs per language for start-up to the first inference (default 4)")
    p.add_argument("--data", default=None, help="CIFAR-10 binary folder (default: the cached synthetic smoke set)")
    p.add_argument("--build-dir", default=str(H.ROOT / "build"), help="C++ build folder (default build/)")
    p.add_argument("--resume", action="store_true", help="reuse the runs whose results DIR/results/ already holds")
    args = p.parse_args(argv)
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    except ValueError:
        p.error(f"--batch-sizes must be comma-separated integers, got {args.batch_sizes!r}")
    if not args.batch_sizes or min(args.batch_sizes) < 1 or min(args.repeats, args.steps, args.latency_iters) < 1:
        p.error("--batch-sizes must be positive, --repeats, --steps and --latency-iters 1 or more")
    return args


def data_folder(args):
    if args.data:
        return Path(args.data)
    from bench.data import cache_dir, synthetic_dir  # the suite's smoke set (plugin SMOKE): 5000 / 1000 images

    return H.ensure_synthetic(cache_dir() / synthetic_dir(5000, 1000, 0), 5000, 1000)


def trainer_args(args, data, bs, repeat, out):
    return ["--model", args.model, "--device", args.device, "--threads", str(args.threads), "--data", str(data),
            "--epochs", "2", "--batch-size", str(bs), "--lr", str(LR), "--train-limit", str(bs * args.steps),
            "--test-limit", "32", "--latency-batch-sizes", str(bs), "--latency-iters", str(args.latency_iters),
            "--repeat", str(repeat), "--results", str(out)]


def run(lang, argv, exe, resume=False):
    """The validated document of one run, or the one line of why it failed; with `resume`, the results file an
    earlier run left, if it validates."""
    results = argv[argv.index("--results") + 1]
    if resume and Path(results).is_file():
        try:
            return load_results(results)
        except ResultsError:
            pass  # a file from a run cut off while writing: run it again
    proc = H.run_trainer(lang, argv, exe)
    if proc.returncode:
        return f"{lang} exit {proc.returncode}: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
    try:
        return load_results(argv[argv.index("--results") + 1])
    except ResultsError as err:
        return f"{lang}: {err}"


def samples(doc):
    """{metric: this run's samples} (compare.SWEEP_METRICS): the steady-state epoch over the steps it ran, and
    every eager latency sample at the run's batch size, in ms."""
    bs = doc["config"]["batch_size"]
    steps = -(-doc["dataset"]["train_records"] // bs)
    return {"train_step_ms": [s / steps * 1000 for s in metrics.steady_epoch_seconds([doc]).flat()],
            "latency_ms": metrics.latency_ms([doc], "eager", bs).flat()}


def sweep(args, data, exe, out, after_repeat=lambda runs, failures: None):
    """{bs: {lang: [per-run samples]}} and the failures, running every (repeat, bs, lang) once; after_repeat sees
    both after each repeat."""
    runs = {bs: {lang: [] for lang in LANGUAGES} for bs in args.batch_sizes}
    failures = []
    for repeat in range(1, args.repeats + 1):
        order = LANGUAGES if repeat % 2 else LANGUAGES[::-1]
        for bs in args.batch_sizes:
            for lang in order:
                doc = run(lang, trainer_args(args, data, bs, repeat, out / f"{lang}-bs{bs}-r{repeat}.json"),
                          exe if lang == "cpp" else None, args.resume)
                if isinstance(doc, str):
                    failures.append(f"batch {bs} repeat {repeat}: {doc}")
                else:
                    runs[bs][lang].append(samples(doc))
                print(f"{PROG}: repeat {repeat} batch {bs} {lang}: "
                      + (doc if isinstance(doc, str) else "ok"), flush=True)
        after_repeat(runs, failures)
    return runs, failures


def table(by_batch_size):
    """sweep.json's rows of one metric: per batch size, each language's median of per-run medians, the ratio with
    its interval, and the report's verdict (suite/report/compare.py)."""
    rows = []
    for bs, r in sorted(by_batch_size.items()):
        if r is None:
            rows.append({"batch_size": bs, "verdict": "n/a: a language has no run"})
            continue
        c = r.comparison
        rows.append({"batch_size": bs, "python_ms": r.python.median_of_runs, "cpp_ms": r.cpp.median_of_runs,
                     "ratio": c.ratio, "low": c.low, "high": c.high, "unit": c.unit,
                     "runs": (r.python.n_runs, r.cpp.n_runs), "p_two_sided": r.p_two_sided, "verdict": r.verdict})
    return rows


def startup(args, data, exe, out, failures):
    """Per language, from runs of their own (languages alternating): process start to the first training step
    and peak RSS of a batch-32 training run, and process start to the first inference of an --eval-only run."""
    found = {lang: {"to_first_step_s": [], "to_first_inference_s": [], "peak_rss_mib": []} for lang in LANGUAGES}
    for repeat in range(1, args.startup_runs + 1):
        for lang in LANGUAGES if repeat % 2 else LANGUAGES[::-1]:
            exe_lang = exe if lang == "cpp" else None
            base = trainer_args(args, data, 32, repeat, out / f"{lang}-startup-train-r{repeat}.json")
            doc = run(lang, base, exe_lang, args.resume)
            if isinstance(doc, str):
                failures.append(f"start-up run {repeat}: {doc}")
            else:
                found[lang]["to_first_step_s"].append(doc["startup_seconds"])
                found[lang]["peak_rss_mib"].append(doc["peak_rss_bytes"] / 2**20)
            doc = run(lang, [*trainer_args(args, data, 1, repeat, out / f"{lang}-startup-infer-r{repeat}.json"),
                             "--eval-only"], exe_lang, args.resume)
            if isinstance(doc, str):
                failures.append(f"eval-only start-up run {repeat}: {doc}")
            else:
                found[lang]["to_first_inference_s"].append(doc["startup_seconds"])
    return {lang: {k: summary(v) for k, v in facts.items()}
            for lang, facts in found.items()}


def summary(values):
    """Median, min, max and count of per-run values, or None without any (start-up is null where /proc cannot
    be read)."""
    samples = RunSamples.one_per_run(values, "")
    return {"median": samples.median, "min": samples.percentile(0), "max": samples.percentile(100),
            "n": samples.n_runs} if samples else None


def write_result(out, args, runs, failures, startup_facts):
    """DIR/sweep.json, whole or not at all; "complete" once the start-up runs are in (`startup_facts`)."""
    ratios = compare.sweep_ratios(runs)
    result = {"args": vars(args), "complete": startup_facts is not None, "runs": runs,
              "tables": {metric: table(by_bs) for metric, by_bs in ratios.items()},
              "crossover": {metric: compare.crossover(by_bs) for metric, by_bs in ratios.items()},
              "startup": startup_facts, "failures": failures}
    tmp = out / "sweep.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, default=str))
    tmp.replace(out / "sweep.json")


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out).resolve()
    (out / "results").mkdir(parents=True, exist_ok=True)
    try:
        exe = H.build_cpp(args.build_dir)
    except H.BuildError as err:
        sys.exit(f"{PROG}: error: {err}")
    data = data_folder(args)
    runs, failures = sweep(args, data, exe, out / "results",
                           lambda runs, failures: write_result(out, args, runs, failures, None))
    write_result(out, args, runs, failures, startup(args, data, exe, out / "results", failures))
    ratios = compare.sweep_ratios(runs)
    # drawn by the report's renderers, as `python -m suite.report ... --sweep DIR/sweep.json` draws it
    plots.plot_crossover(ratios, out / "crossover.png")
    (out / "sweep.md").write_text(markdown.sweep_md(json.loads((out / "sweep.json").read_text()), out / "sweep.json")
                                  + "\n")
    print((out / "sweep.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
