"""How well the gate (suite/gate.py) tells a slowdown from noise on this machine: false alarms on unchanged reruns,
and the detection rate of injected slowdowns.

    python -m suite.gate_power --out DIR [--reruns 10] [--slowdowns 2,5,10] [--repeats 5] [--baseline-repeats 10]
                               [--langs python] [--train-limit 256] [--epochs 3] [--build-dir DIR]

1. A baseline: one `pytest tests/test_benchmarks.py --repeats B --benchmark-json` session, then the step time is
   calibrated from it: the median steady-state epoch time over the steps per epoch, per language.
2. Rounds: in each, one unchanged session and one per slowdown, in that order (conditions interleaved, so that
   a drift of the machine's speed falls on all of them alike). A slowdown of x% sleeps x% of the calibrated
   step time inside every training step (the trainers' BENCH_SLEEP_PER_STEP_MS hook, README "Test hooks").
   Each session's JSON goes through the real gate command, `python -m suite.gate RUN --baseline BASE`.
3. DIR/gate-power.json keeps every session's gate output and exit status; DIR/gate-power.md the tables: false
   alarms (any benchmark failing an unchanged rerun), detections (the slowed language's steady-state epoch
   benchmark failing), the change the gate measured, and the same gate re-applied to the first k repeats of
   every session (k = 3 .. --repeats), which shows the repeats a detection takes without running more.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from suite import gate
from suite import harness as H

PROG = "suite.gate_power"


def parse_args(argv):
    p = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for every session's JSON and the results")
    p.add_argument("--reruns", type=int, default=10, help="rounds (unchanged + each slowdown) (default 10)")
    p.add_argument("--slowdowns", default="2,5,10", help="injected slowdowns in %% of step time (default 2,5,10)")
    p.add_argument("--repeats", type=int, default=5, help="runs per language in each checked session (default 5)")
    p.add_argument("--baseline-repeats", type=int, default=10, help="runs per language in the baseline (default 10)")
    p.add_argument("--langs", default="python", help="languages (default python)")
    p.add_argument("--train-limit", type=int, default=256, help="training images per epoch (default 256)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run, 2+ (default 3: 2 steady-state)")
    p.add_argument("--threads", type=int, default=2, help="trainer threads (default 2)")
    p.add_argument("--build-dir", default=str(H.ROOT / "build"), help="C++ build folder (default build/)")
    p.add_argument("--thresholds", default=str(gate.THRESHOLDS), help="the gate's thresholds (default suite/gate.toml)")
    args = p.parse_args(argv)
    args.slowdowns = [float(x) for x in args.slowdowns.split(",") if x]
    if args.epochs < 2 or args.repeats < 1 or args.baseline_repeats < 1 or args.reruns < 1:
        p.error("--epochs must be 2 or more, --repeats, --baseline-repeats and --reruns 1 or more")
    return args


def session_command(args, repeats, json_path):
    return [sys.executable, "-m", "pytest", str(H.ROOT / "tests" / "test_benchmarks.py"), "-p", "no:cacheprovider",
            "-p", "no:xdist", "-q", "--benchmark-disable-gc", "--device", "cpu", "--models", "resnet18",
            "--langs", args.langs, "--repeats", str(repeats), "--epochs", str(args.epochs),
            "--train-limit", str(args.train_limit), "--test-limit", "32", "--batch-size", str(args.batch_size),
            "--threads", str(args.threads), "--latency-iters", "20", "--latency-batch-sizes", "1",
            "--build-dir", args.build_dir, f"--benchmark-json={json_path}"]


def run_session(args, repeats, json_path, sleep_ms=None):
    env = {**os.environ, "BENCH_SLEEP_PER_STEP_MS": f"{sleep_ms:.3f}" if sleep_ms else "0"}
    proc = subprocess.run(session_command(args, repeats, json_path), cwd=H.ROOT, env=env, capture_output=True,
                          text=True)
    if proc.returncode:
        sys.exit(f"{PROG}: error: benchmark session failed (exit {proc.returncode}): {proc.stdout[-1500:]}")
    return gate.load_run(json_path)


def step_ms(base, lang, args):
    """The calibrated training step: the median steady-state epoch over its steps, in ms."""
    [epoch] = [b for b in base["benchmarks"] if b["name"] == f"test_epoch_time[resnet18-{lang}-default]"]
    steps = -(-args.train_limit // args.batch_size)
    return statistics.median(epoch["stats"]["data"]) / steps * 1000


def first_runs(run, k):
    """The same run with only its first k repeats: what a session of --repeats k would have measured."""
    out = json.loads(json.dumps(run))
    for bench in out["benchmarks"]:
        keep = [i for i, r in enumerate(bench["extra_info"]["sample_runs"]) if r <= k]
        bench["stats"]["data"] = [bench["stats"]["data"][i] for i in keep]
        bench["extra_info"]["sample_runs"] = [bench["extra_info"]["sample_runs"][i] for i in keep]
    return out


def judge(run, base, limits, slowed_langs):
    """(any regression, the slowed epoch benchmarks detected, their measured changes)."""
    regressions, lines = gate.compare(run, base, limits)
    epoch = [f"test_epoch_time[resnet18-{lang}-default]" for lang in slowed_langs]
    detected = [name for name in epoch if any(line.startswith(f"REGRESSION {name} ") for line in regressions)]
    changes = {name: line.split("change ")[1].split(" ")[0] for name in epoch for line in lines
               if line.split(" ")[1:2] == [name] and "change " in line}
    return bool(regressions), detected, changes, lines


def gate_exit(json_path, base_path, thresholds):
    """The real command's exit status and output, as a user runs it."""
    proc = subprocess.run([sys.executable, "-m", "suite.gate", str(json_path), "--baseline", str(base_path),
                           "--thresholds", thresholds, "-v"], cwd=H.ROOT, capture_output=True, text=True)
    return proc.returncode, proc.stdout.strip().splitlines()


def summarize(records, args, limits, base, langs):
    """The tables: per condition and per repeats-subset k, false alarms or detections out of the reruns."""
    ks = sorted({3, args.repeats} | set(range(3, args.repeats + 1)))
    rows = []
    for cond in ["0"] + [f"{s:g}" for s in args.slowdowns]:
        recs = [r for r in records if r["slowdown_pct"] == cond]
        for k in ks:
            hits = 0
            for r in recs:
                run = first_runs(gate.load_run(r["json"]), k)
                anything, detected, changes, _ = judge(run, base, limits, langs)
                hits += anything if cond == "0" else len(detected) == len(langs)
            rows.append({"slowdown_pct": cond, "repeats": k, "sessions": len(recs), "hits": hits})
    return rows


def markdown(rows, records, args, calib, elapsed):
    lines = ["| Injected slowdown | Repeats per session | Sessions | Gate failed | Rate |", "|---|---|---|---|---|"]
    for r in rows:
        what = "none (false alarm = any benchmark failing)" if r["slowdown_pct"] == "0" else f"{r['slowdown_pct']}%"
        lines.append(f"| {what} | {r['repeats']} | {r['sessions']} | {r['hits']} | {r['hits'] / r['sessions']:.0%} |")
    lines += ["", "| Round | Slowdown | Sleep per step (ms) | Gate exit | Measured change (epoch time) |",
              "|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['round']} | {r['slowdown_pct']}% | {r['sleep_ms']:.2f} | {r['gate_exit']} | "
                     f"{', '.join(f'{v}' for v in r['changes'].values())} |")
    lines += ["", f"Calibrated step time (ms): {calib}. Wall time: {elapsed / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    limits = gate.load_thresholds(args.thresholds)
    langs = args.langs.split(",")
    start = time.monotonic()
    base_path = out / "baseline.json"
    print(f"{PROG}: baseline, {args.baseline_repeats} runs per language", flush=True)
    base = run_session(args, args.baseline_repeats, base_path)
    calib = {lang: round(step_ms(base, lang, args), 2) for lang in langs}
    records = []
    for rnd in range(1, args.reruns + 1):
        for pct in [0.0, *args.slowdowns]:
            # one sleep for all languages: the slowest language's step sets it, so no language is slowed by less
            sleep = pct / 100 * max(calib.values())
            path = out / f"round{rnd:02d}-slow{pct:g}.json"
            run = run_session(args, args.repeats, path, sleep)
            code, gate_lines = gate_exit(path, base_path, args.thresholds)
            _, detected, changes, _ = judge(run, base, limits, langs)
            records.append({"round": rnd, "slowdown_pct": f"{pct:g}", "sleep_ms": sleep, "json": str(path),
                            "gate_exit": code, "detected": detected, "changes": changes, "gate_output": gate_lines})
            print(f"{PROG}: round {rnd} slowdown {pct:g}%: gate exit {code}, epoch change {changes}", flush=True)
            (out / "gate-power.json").write_text(json.dumps({"args": vars(args), "calibrated_step_ms": calib,
                                                            "records": records}, indent=1))
    rows = summarize(records, args, limits, base, langs)
    elapsed = time.monotonic() - start
    (out / "gate-power.json").write_text(json.dumps({"args": vars(args), "calibrated_step_ms": calib,
                                                    "records": records, "summary": rows,
                                                    "elapsed_seconds": elapsed}, indent=1))
    (out / "gate-power.md").write_text(markdown(rows, records, args, calib, elapsed))
    print((out / "gate-power.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
