"""The crossover: training-step time and inference latency of both languages over batch sizes, with the
Python / C++ ratio's confidence band, and the batch size below which C++ is measurably faster, if any. Then
start-up and footprint: process start to the first training step and to the first inference, peak memory.

    python -m suite.sweep --out DIR [--batch-sizes 1,2,4,...,256] [--repeats 4] [--model resnet18]
                          [--device auto] [--steps 4] [--latency-iters 20] [--threads 0] [--data DIR]
                          [--build-dir DIR]

Every run is a fresh trainer process; the languages alternate (python, cpp, then cpp, python on the next
repeat) at each batch size, and the batch sizes are swept once per repeat, so that a drift of the machine's
speed falls on both languages and every batch size alike. A run trains 2 epochs of --steps steps at its batch
size; its training-step sample is the steady-state epoch (epoch 2) over its steps, its latency samples are its
eager latency at that batch size. suite/stats.py compares the languages per batch size (over per-run medians
from 4 runs a side). Writes DIR/sweep.json, DIR/sweep.md, DIR/crossover.png and every run's results in
DIR/results/.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.vocab import LANGUAGES, MODELS  # noqa: E402
from suite import harness as H  # noqa: E402
from suite import stats  # noqa: E402
from suite.schema import ResultsError, load_results  # noqa: E402

PROG = "suite.sweep"
DEFAULT_BATCH_SIZES = "1,2,4,8,16,32,64,128,256"
LR = 0.01  # small enough that batch 1 does not diverge in a few steps; the same in both languages
METRICS = {"train_step_ms": "training step (ms)", "latency_ms": "inference latency (ms)"}


def parse_args(argv):
    p = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--batch-sizes", default=DEFAULT_BATCH_SIZES, help=f"(default {DEFAULT_BATCH_SIZES})")
    p.add_argument("--repeats", type=int, default=4, help="runs per language and batch size (default 4)")
    p.add_argument("--model", default="resnet18", choices=list(MODELS))
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--steps", type=int, default=4, help="training steps per epoch (default 4)")
    p.add_argument("--latency-iters", type=int, default=20, help="latency samples per run (default 20)")
    p.add_argument("--threads", type=int, default=0, help="CPU intra-op threads (default 0: torch's)")
    p.add_argument("--startup-runs", type=int, default=4,
                   help="--eval-only runs per language for start-up to the first inference (default 4)")
    p.add_argument("--data", default=None, help="CIFAR-10 binary folder (default: the cached synthetic smoke set)")
    p.add_argument("--build-dir", default=str(H.ROOT / "build"), help="C++ build folder (default build/)")
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
    from bench.data import cache_dir, synthetic_dir  # the suite's smoke set (conftest.SMOKE): 5000 / 1000 images

    return H.ensure_synthetic(cache_dir() / synthetic_dir(5000, 1000, 0), 5000, 1000)


def trainer_args(args, data, bs, repeat, out):
    return ["--model", args.model, "--device", args.device, "--threads", str(args.threads), "--data", str(data),
            "--epochs", "2", "--batch-size", str(bs), "--lr", str(LR), "--train-limit", str(bs * args.steps),
            "--test-limit", "32", "--latency-batch-sizes", str(bs), "--latency-iters", str(args.latency_iters),
            "--repeat", str(repeat), "--results", str(out)]


def run(lang, argv, exe):
    """The validated document of one run, or the one line of why it failed."""
    proc = H.run_trainer(lang, argv, exe)
    if proc.returncode:
        return f"{lang} exit {proc.returncode}: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
    try:
        return load_results(argv[argv.index("--results") + 1])
    except ResultsError as err:
        return f"{lang}: {err}"


def samples(doc):
    """{metric: this run's samples}: the steady-state epoch over the steps it ran, and every latency sample (ms)."""
    steps = -(-doc["dataset"]["train_records"] // doc["config"]["batch_size"])
    return {"train_step_ms": [doc["epochs"][1]["train_seconds"] / steps * 1000],
            "latency_ms": doc["latency"][0]["samples_ms"]}


def sweep(args, data, exe, out):
    """{bs: {lang: [per-run samples]}} and the failures, running every (repeat, bs, lang) once."""
    runs = {bs: {lang: [] for lang in LANGUAGES} for bs in args.batch_sizes}
    failures = []
    for repeat in range(1, args.repeats + 1):
        order = LANGUAGES if repeat % 2 else LANGUAGES[::-1]
        for bs in args.batch_sizes:
            for lang in order:
                doc = run(lang, trainer_args(args, data, bs, repeat, out / f"{lang}-bs{bs}-r{repeat}.json"),
                          exe if lang == "cpp" else None)
                if isinstance(doc, str):
                    failures.append(f"batch {bs} repeat {repeat}: {doc}")
                else:
                    runs[bs][lang].append(samples(doc))
                print(f"{PROG}: repeat {repeat} batch {bs} {lang}: "
                      + (doc if isinstance(doc, str) else "ok"), flush=True)
    return runs, failures


def compare(runs, metric):
    """Per batch size: each language's median, the ratio with its interval, and the verdict."""
    rows = []
    for bs, by_lang in runs.items():
        py, cpp = ([r[metric] for r in by_lang[lang]] for lang in LANGUAGES)
        if not py or not cpp:
            rows.append({"batch_size": bs, "verdict": "n/a: a language has no run"})
            continue
        c = stats.compare_runs(py, cpp)
        p_two = min(1.0, 2 * min(c.p_greater, c.p_less))
        faster = c.excludes_one() and (c.unit != stats.UNIT_RUNS or p_two <= 0.05)
        rows.append({"batch_size": bs, "python_ms": stats.median_of_runs(py), "cpp_ms": stats.median_of_runs(cpp),
                     "ratio": c.ratio, "low": c.low, "high": c.high, "unit": c.unit, "runs": (len(py), len(cpp)),
                     "p_two_sided": p_two,
                     "verdict": ("C++ faster" if c.low > 1 else "Python faster") if faster else "no difference shown"})
    return rows


def crossover(rows):
    """The largest batch size up to which C++ is measurably faster at every batch size swept, from the smallest;
    None when it is not at the smallest (whatever happens at larger ones: the table shows them)."""
    below = None
    for row in sorted(rows, key=lambda r: r["batch_size"]):
        if row["verdict"] != "C++ faster":
            break
        below = row["batch_size"]
    return below


def plot(tables, path):
    fig, axes = plt.subplots(1, len(tables), figsize=(5.5 * len(tables), 4), squeeze=False)
    for ax, (metric, rows) in zip(axes[0], tables.items()):
        rows = [r for r in rows if "ratio" in r]
        bs = [r["batch_size"] for r in rows]
        ax.plot(bs, [r["ratio"] for r in rows], marker="o", label="Python / C++ (ratio of medians)")
        band = [(r["batch_size"], r["low"], r["high"]) for r in rows if r["low"] is not None]
        if band:
            ax.fill_between([b for b, _, _ in band], [lo for _, lo, _ in band], [hi for _, _, hi in band],
                            alpha=0.25, label="95% CI")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(bs, [str(b) for b in bs])
        ax.set_xlabel("batch size")
        ax.set_ylabel("Python / C++")
        ax.set_title(METRICS[metric])
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def startup(args, data, exe, out, failures):
    """Per language, from runs of their own (languages alternating): process start to the first training step
    and peak RSS of a batch-32 training run, and process start to the first inference of an --eval-only run."""
    found = {lang: {"to_first_step_s": [], "to_first_inference_s": [], "peak_rss_mib": []} for lang in LANGUAGES}
    for repeat in range(1, args.startup_runs + 1):
        for lang in LANGUAGES if repeat % 2 else LANGUAGES[::-1]:
            exe_lang = exe if lang == "cpp" else None
            base = trainer_args(args, data, 32, repeat, out / f"{lang}-startup-train-r{repeat}.json")
            doc = run(lang, base, exe_lang)
            if isinstance(doc, str):
                failures.append(f"start-up run {repeat}: {doc}")
            else:
                found[lang]["to_first_step_s"].append(doc["startup_seconds"])
                found[lang]["peak_rss_mib"].append(doc["peak_rss_bytes"] / 2**20)
            doc = run(lang, [*trainer_args(args, data, 1, repeat, out / f"{lang}-startup-infer-r{repeat}.json"),
                             "--eval-only"], exe_lang)
            if isinstance(doc, str):
                failures.append(f"eval-only start-up run {repeat}: {doc}")
            else:
                found[lang]["to_first_inference_s"].append(doc["startup_seconds"])
    return {lang: {k: summary([x for x in v if x is not None]) for k, v in facts.items()}
            for lang, facts in found.items()}


def summary(values):
    """Median, min, max and count, or None without values (start-up is null where /proc cannot be read)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)} \
        if values else None


def markdown(sweep, plot_name="crossover.png"):
    """The sweep's tables as Markdown lines, from sweep.json's content (the report includes them too)."""
    args, tables, crossovers = sweep["args"], sweep["tables"], sweep["crossover"]
    lines = [f"Model {args['model']}, device {args['device']}, {args['repeats']} runs per language and batch size "
             f"(alternating), {args['steps']} steps per epoch, {args['latency_iters']} latency samples per run.", "",
             f"![Python / C++ against batch size, with the 95% interval]({plot_name})", ""]
    for metric, rows in tables.items():
        lines += [f"### {METRICS[metric]}", "",
                  "| Batch size | Python (ms) | C++ (ms) | Python / C++ | 95% CI | p (two-sided) | Verdict |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            if "ratio" not in r:
                lines.append(f"| {r['batch_size']} | | | | | | {r['verdict']} |")
                continue
            ci = "n/a" if r["low"] is None else f"{r['low']:.3f}–{r['high']:.3f}"
            lines.append(f"| {r['batch_size']} | {r['python_ms']:.3f} | {r['cpp_ms']:.3f} | {r['ratio']:.3f} | {ci} | "
                         f"{r['p_two_sided']:.3g} | {r['verdict']} |")
        below = crossovers[metric]
        lines += ["", "C++ is measurably faster at every batch size up to " + str(below) if below else
                  "There is no batch size from the smallest swept at which C++ is measurably faster.", ""]
    lines += ["### Start-up and footprint", "",
              "| Language | Process start to first training step (s) | to first inference (s) | Peak RSS (MiB) |",
              "|---|---|---|---|"]
    for lang, facts in sweep["startup"].items():
        cells = ["n/a" if (f := facts[k]) is None else f"{f['median']:.2f} ({f['min']:.2f}–{f['max']:.2f})"
                 for k in ("to_first_step_s", "to_first_inference_s", "peak_rss_mib")]
        lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    if sweep["failures"]:
        lines += ["", "Runs that failed: " + "; ".join(sweep["failures"])]
    return lines


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out).resolve()
    (out / "results").mkdir(parents=True, exist_ok=True)
    try:
        exe = H.build_cpp(args.build_dir)
    except H.BuildError as err:
        sys.exit(f"{PROG}: error: {err}")
    data = data_folder(args)
    runs, failures = sweep(args, data, exe, out / "results")
    tables = {metric: compare(runs, metric) for metric in METRICS}
    result = {"args": vars(args), "runs": runs, "tables": tables,
              "crossover": {metric: crossover(rows) for metric, rows in tables.items()},
              "startup": startup(args, data, exe, out / "results", failures), "failures": failures}
    (out / "sweep.json").write_text(json.dumps(result, indent=1, default=str))
    plot(tables, out / "crossover.png")
    (out / "sweep.md").write_text("\n".join(markdown(json.loads((out / "sweep.json").read_text()))) + "\n")
    print((out / "sweep.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
