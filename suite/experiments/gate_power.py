"""How well the gate (suite/gate.py) tells a slowdown from noise on this machine, in both of its modes: a stored
baseline (`pytest --gate`, `python -m suite.gate`) and the interleaved A/B gate (`pytest --gate-ab REV`).

    python -m suite.experiments.gate_power --out DIR [--reruns 10] [--slowdowns 2,5,10] [--repeats 5]
                                           [--baseline-repeats 10] [--langs python] [--train-limit 256]
                                           [--batch-size 32] [--epochs 3] [--build-dir DIR]

1. The stored baseline: one `pytest tests/test_benchmarks.py --repeats B --benchmark-json` session. The step
   time is calibrated from it: the median steady-state epoch over the steps per epoch, per language.
2. Rounds: in each, one A/B session per condition (unchanged, then each slowdown; conditions interleaved, so that
   a drift of the machine's speed falls on all of them alike): `pytest ... --repeats N --gate-ab HEAD`, whose
   trainers alternate A (HEAD, exported from git, run as committed) and B (this tree). A slowdown of x% sleeps
   x% of the calibrated step time inside every training step of B (the trainers' BENCH_SLEEP_PER_STEP_MS hook,
   docs/gate.md, "Test hooks"; the A/B gate keeps the hooks off on A). The session's exit status and gate lines are
   the A/B verdict. Its B runs then go through the real stored-baseline command, `python -m suite.gate B.json
   --baseline BASE`: the stored verdict on the same runs.
3. DIR/gate-power.json keeps every session's gate output and exit status; DIR/gate-power.md the tables, per mode:
   false alarms (any benchmark failing an unchanged rerun), detections (the slowed language's steady-state epoch
   benchmark failing), the change the gate measured, and the same gate re-applied to the first k repeats of
   every session (k = 3 .. --repeats), which shows the repeats a detection takes without running more.
Nothing is written to the repository's baselines/: the stored baseline lives in DIR.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from suite import gate, stats
from suite import harness as H

PROG = "suite.experiments.gate_power"
MODES = ("stored", "ab")  # the gate's two modes, as the tables name them
MODE_NAMES = {"stored": "stored baseline (`--gate` / `python -m suite.gate`)",
              "ab": "interleaved A/B (`--gate-ab HEAD`)"}


# what an experiment's gate-power.json fixes for --summarize and --resume
SAVED_ARGS = ("reruns", "slowdowns", "repeats", "baseline_repeats", "langs", "train_limit", "batch_size", "epochs")


def parse_args(argv):
    p = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for every session's JSON and the results")
    p.add_argument("--reruns", type=int, default=10, help="rounds (unchanged + each slowdown) (default 10)")
    p.add_argument("--slowdowns", default="2,5,10", help="injected slowdowns in %% of step time (default 2,5,10)")
    p.add_argument("--repeats", type=int, default=5, help="runs per language and side in each session (default 5)")
    p.add_argument("--baseline-repeats", type=int, default=10,
                   help="runs per language in the stored baseline (default 10)")
    p.add_argument("--langs", default="python", help="languages (default python)")
    p.add_argument("--train-limit", type=int, default=256, help="training images per epoch (default 256)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run, 2+ (default 3: 2 steady-state)")
    p.add_argument("--threads", type=int, default=2, help="trainer threads (default 2)")
    p.add_argument("--build-dir", default=str(H.ROOT / "build"), help="C++ build folder (default build/)")
    p.add_argument("--thresholds", default=str(gate.THRESHOLDS), help="the gate's thresholds (default suite/gate.toml)")
    p.add_argument("--summarize", action="store_true",
                   help="run nothing: the tables again from DIR's sessions (this checkout's gate and --thresholds)")
    p.add_argument("--resume", action="store_true",
                   help="go on with DIR's experiment that was cut off: its arguments, baseline and A commit; the "
                        "sessions it has are kept, not run again")
    args = p.parse_args(argv)
    try:
        args.slowdowns = [float(x) for x in args.slowdowns.split(",") if x]
    except ValueError:
        p.error(f"--slowdowns must be comma-separated numbers, got {args.slowdowns!r}")
    if args.epochs < 2 or args.repeats < 3 or args.baseline_repeats < 3 or args.reruns < 1:
        p.error("--epochs must be 2 or more, --repeats and --baseline-repeats 3 or more, --reruns 1 or more")
    return args


def session_command(args, repeats, json_path, extra=()):
    return [sys.executable, "-m", "pytest", str(H.ROOT / "tests" / "test_benchmarks.py"), "-p", "no:cacheprovider",
            "-p", "no:xdist", "-q", "--device", "cpu", "--models", "resnet18", "--langs", args.langs,
            "--repeats", str(repeats), "--epochs", str(args.epochs), "--train-limit", str(args.train_limit),
            "--test-limit", "32", "--batch-size", str(args.batch_size), "--threads", str(args.threads),
            "--latency-iters", "20", "--latency-batch-sizes", "1", "--build-dir", args.build_dir,
            f"--benchmark-json={json_path}", *extra]


def run_session(args, repeats, json_path, sleep_ms=0.0, extra=()):
    """(exit status, output) of one benchmark session; a session that fails for any reason but the gate stops
    the experiment in one line."""
    env = {**os.environ, "BENCH_SLEEP_PER_STEP_MS": f"{sleep_ms:.3f}" if sleep_ms else "0"}
    proc = subprocess.run(session_command(args, repeats, json_path, extra), cwd=H.ROOT, env=env,
                          capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and "regression(s) in" not in out):
        sys.exit(f"{PROG}: error: benchmark session failed (exit {proc.returncode}): {out[-1500:]}")
    return proc.returncode, out


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


def judge(run, base, limits, langs):
    """(any regression, the slowed epoch benchmarks detected, their measured changes): the gate's own compare."""
    regressions, lines = gate.compare(run, base, limits)
    epoch = [f"test_epoch_time[resnet18-{lang}-default]" for lang in langs]
    detected = [name for name in epoch if any(line.startswith(f"REGRESSION {name} ") for line in regressions)]
    changes = {name: line.split("change ")[1].split(" ")[0] for name in epoch for line in lines
               if line.split(" ")[1:2] == [name] and "change " in line}
    return bool(regressions), detected, changes


def stored_gate(json_path, base_path, thresholds):
    """The real command's exit status and output, as a user runs it."""
    proc = subprocess.run([sys.executable, "-m", "suite.gate", str(json_path), "--baseline", str(base_path),
                           "--thresholds", thresholds, "-v"], cwd=H.ROOT, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        sys.exit(f"{PROG}: error: python -m suite.gate failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc.returncode, proc.stdout.strip().splitlines()


def gate_lines(output):
    return [line for line in output.splitlines() if line.startswith("torch-api-bench gate:")]


def absolute(records, out, ran_in=None):
    """The records with their files' paths under `out`: stored relative to the experiment's folder, so that the
    folder can move (an older file holds absolute paths under `ran_in`, the folder it was run in)."""
    def fix(path):
        path = Path(path)
        if path.is_absolute() and ran_in and path.is_relative_to(ran_in):
            path = path.relative_to(ran_in)
        return str(out / path)
    return [{**r, "json": fix(r["json"]), "ab_baseline_json": fix(r["ab_baseline_json"])} for r in records]


def pairs(record, base):
    """{mode: (this run, its baseline)} for one session."""
    run = gate.load_run(record["json"])
    return {"stored": (run, base), "ab": (run, gate.load_run(record["ab_baseline_json"]))}


def conditions(args):
    return ["0"] + [f"{s:g}" for s in args.slowdowns]


def hit(run, baseline, limits, langs, cond):
    """A false alarm (any benchmark failing an unchanged session) or a detection (every slowed language's epoch
    benchmark failing), as the gate's own compare judges it."""
    anything, detected, _ = judge(run, baseline, limits, langs)
    return anything if cond == "0" else len(detected) == len(langs)


def subset_pair(mode, run, baseline, k):
    """The session as if it had run k repeats: the A/B baseline shrinks with it, a stored baseline does not."""
    return first_runs(run, k), first_runs(baseline, k) if mode == "ab" else baseline


def summarize(records, args, limits, base, langs):
    """Per mode, condition and repeats-subset k (3 .. --repeats): false alarms or detections out of the sessions."""
    rows = []
    for cond in conditions(args):
        recs = [r for r in records if r["slowdown_pct"] == cond]
        for k in range(3, args.repeats + 1):
            hits = dict.fromkeys(MODES, 0)
            for r in recs:
                for mode, (run, baseline) in pairs(r, base).items():
                    hits[mode] += hit(*subset_pair(mode, run, baseline, k), limits, langs, cond)
            rows += [{"mode": mode, "slowdown_pct": cond, "repeats": k, "sessions": len(recs), "hits": hits[mode]}
                     for mode in MODES]
    return rows


# Other gate settings the tables are also computed for, at the sessions' full repeats (what-ifs on the same runs,
# not what suite/gate.toml says).
SENSITIVITY = [(alpha, threshold) for alpha in (0.01, 0.05) for threshold in (0.02, 0.03, 0.05)]


def sensitivity(records, args, limits, base, langs):
    rows = []
    for alpha, threshold in SENSITIVITY:
        what_if = {**limits, "alpha": alpha, "groups": {**limits["groups"], "epoch_time": threshold}}
        for mode in MODES:
            row = {"mode": mode, "alpha": alpha, "epoch_threshold": threshold}
            for cond in conditions(args):
                recs = [r for r in records if r["slowdown_pct"] == cond]
                row[cond] = (sum(hit(*pairs(r, base)[mode], what_if, langs, cond) for r in recs), len(recs))
            rows.append(row)
    return rows


def run_medians(run, name):
    return gate.runs_of(next(b for b in run["benchmarks"] if b["name"] == name)).run_medians


def noise(records, base, langs):
    """The machine's noise, from the unchanged runs: run-to-run spread (IQR/median of per-run medians) of the
    steady-state epoch, and the drift of the A side's median from the stored baseline's over the experiment."""
    name = f"test_epoch_time[resnet18-{langs[0]}-default]"
    base_medians = run_medians(base, name)
    ref = statistics.median(base_medians)
    spreads, drift = [], []
    for r in records:
        a = run_medians(gate.load_run(r["ab_baseline_json"]), name)
        spreads.append(stats.iqr_over_median(a))
        drift.append(statistics.median(a) / ref - 1)
    return {"benchmark": name, "baseline_iqr_over_median": stats.iqr_over_median(base_medians),
            "session_iqr_over_median": spreads, "drift_from_baseline": drift}


SIMULATED_REPEATS = (5, 10, 15, 20, 30, 40)
SIMULATIONS = 2000


def simulated_power(records, args, limits, langs):
    """Beyond the measured repeats: the A/B gate's detection rate of each slowdown (and false-alarm rate at 0) on
    the steady-state epoch benchmark alone, for more repeats per side, by resampling this machine's measured
    run-to-run noise: the per-run medians of the unchanged sessions, each divided by its session's median. An
    extrapolation from measured noise (independent runs assumed), not a measurement."""
    import numpy as np

    name = f"test_epoch_time[resnet18-{langs[0]}-default]"
    noise_runs = []
    for r in (r for r in records if r["slowdown_pct"] == "0"):
        for path in (r["json"], r["ab_baseline_json"]):
            medians = run_medians(gate.load_run(path), name)
            noise_runs += [m / statistics.median(medians) for m in medians]
    rng = np.random.default_rng(0)
    threshold, alpha = limits["groups"]["epoch_time"], limits["alpha"]
    rows = []
    for pct in [0.0, *args.slowdowns]:
        row = {"slowdown_pct": f"{pct:g}"}
        for k in SIMULATED_REPEATS:
            hits = 0
            for _ in range(SIMULATIONS):
                a = rng.choice(noise_runs, k)
                b = rng.choice(noise_runs, k) * (1 + pct / 100)
                # the gate's rule (gate.judge) without its interval, which the decision does not use
                hits += np.median(b) / np.median(a) - 1 > threshold and stats.one_sided_p(b, a, "greater") <= alpha
            row[k] = hits / SIMULATIONS
        rows.append(row)
    return {"noise_runs": len(noise_runs), "iqr_over_median": stats.iqr_over_median(noise_runs), "rows": rows}


def session_outcome(mode, record, base, limits, langs):
    """What the gate says of one whole session: the failing benchmarks and the epoch change it measured."""
    run, baseline = pairs(record, base)[mode]
    regressions, lines = gate.compare(run, baseline, limits)
    _, _, changes = judge(run, baseline, limits, langs)
    failed = [line.split(" ")[1].split("[")[0] for line in regressions]
    return f"{', '.join(changes.values()) or 'n/a'}; " + (f"FAILS: {', '.join(failed)}" if failed else "passes")


def markdown(rows, sens, noise_facts, simulated, records, args, limits, base, langs, calib, elapsed):
    ks = list(range(3, args.repeats + 1))
    lines = []
    for mode in MODES:
        lines += [f"### {MODE_NAMES[mode]}", "",
                  "Sessions in which the gate failed, by repeats per side (the first k runs of each session):", "",
                  "| Injected slowdown | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
        for cond in conditions(args):
            cells = [next(r for r in rows if r["mode"] == mode and r["slowdown_pct"] == cond and r["repeats"] == k)
                     for k in ks]
            what = "none: false alarms (any benchmark)" if cond == "0" else f"{cond}%: detections (epoch time)"
            lines.append(f"| {what} | " + " | ".join(f"{c['hits']}/{c['sessions']}" for c in cells) + " |")
        lines.append("")
    lines += [f"### What if (k={args.repeats}): other alpha and epoch-time thresholds on the same runs", "",
              "| Mode | alpha | epoch threshold | " + " | ".join(
                  "false alarms" if c == "0" else f"{c}% detected" for c in conditions(args)) + " |",
              "|---|---|---|" + "---|" * len(conditions(args))]
    for r in sens:
        lines.append(f"| {r['mode']} | {r['alpha']} | {r['epoch_threshold']:.0%} | "
                     + " | ".join(f"{r[c][0]}/{r[c][1]}" for c in conditions(args)) + " |")
    spreads, drift = noise_facts["session_iqr_over_median"], noise_facts["drift_from_baseline"]
    lines += ["", "### The machine's noise", "",
              f"`{noise_facts['benchmark']}`, per-run medians: IQR/median "
              f"{noise_facts['baseline_iqr_over_median']:.1%} in the stored baseline; in each session's A side a "
              f"median {statistics.median(spreads):.1%} (range {min(spreads):.1%} to {max(spreads):.1%}). The A "
              "side's median against the stored baseline's, session by session (the machine's drift, which a stored "
              "baseline cannot tell from a change): "
              + ", ".join(f"{d:+.1%}" for d in drift) + ".", "",
              f"### Beyond {args.repeats} repeats: simulated from the measured noise", "",
              f"The interleaved gate on `{noise_facts['benchmark']}` alone, {SIMULATIONS} draws per cell from "
              f"{simulated['noise_runs']} per-run medians of the unchanged sessions (each over its session's median; "
              f"IQR/median {simulated['iqr_over_median']:.1%}), independent runs assumed: an extrapolation, not a "
              "measurement.", "",
              "| Injected slowdown | " + " | ".join(f"k={k}" for k in SIMULATED_REPEATS) + " |",
              "|---|" + "---|" * len(SIMULATED_REPEATS)]
    for row in simulated["rows"]:
        what = "none: false alarms" if row["slowdown_pct"] == "0" else f"{row['slowdown_pct']}%: detections"
        lines.append(f"| {what} | " + " | ".join(f"{row[k]:.0%}" for k in SIMULATED_REPEATS) + " |")
    lines += ["", "### Every session (k = all repeats)", "",
              "| Round | Slowdown | Sleep per step (ms) | Stored: epoch change; verdict | A/B: epoch change; verdict |",
              "|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['round']} | {r['slowdown_pct']}% | {r['sleep_ms']:.2f} | "
                     f"{session_outcome('stored', r, base, limits, langs)} | "
                     f"{session_outcome('ab', r, base, limits, langs)} |")
    lines += ["", f"Calibrated step time (ms): {calib}. Wall time of the experiment: {elapsed / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def write_json(out, args, calib, records, **more):
    (out / "gate-power.json").write_text(json.dumps({"args": vars(args), "calibrated_step_ms": calib,
                                                    "records": records, **more}, indent=1))


def finish(out, args, limits, calib, records, base, commit, elapsed, ran_in=None):
    """The tables of the sessions so far, judged by this checkout's gate with `limits`."""
    langs = args.langs.split(",")
    found = absolute(records, out, ran_in)
    rows = summarize(found, args, limits, base, langs)
    sens = sensitivity(found, args, limits, base, langs)
    noise_facts = noise(found, base, langs)
    simulated = simulated_power(found, args, limits, langs)
    write_json(out, args, calib, records, summary=rows, sensitivity=sens, noise=noise_facts, simulated=simulated,
               elapsed_seconds=elapsed, commit=commit)
    (out / "gate-power.md").write_text(markdown(rows, sens, noise_facts, simulated, found, args, limits, base, langs,
                                                calib, elapsed))
    print((out / "gate-power.md").read_text())


def load_saved(out, args):
    """DIR's gate-power.json, its experiment's arguments copied into args."""
    try:
        saved = json.loads((out / "gate-power.json").read_text())
    except (OSError, ValueError) as e:
        sys.exit(f"{PROG}: error: no readable experiment in {out}: {e}")
    for key in SAVED_ARGS:
        setattr(args, key, saved["args"][key])
    return saved


def summarize_only(args):
    """--summarize: the tables again from DIR/gate-power.json and its sessions' files (e.g. after a change to the
    gate or its thresholds, or of an experiment that was cut off), without running anything."""
    out = Path(args.out).resolve()
    saved = load_saved(out, args)
    finish(out, args, gate.load_thresholds(args.thresholds), saved["calibrated_step_ms"], saved["records"],
           gate.load_run(out / "baseline.json"), saved.get("commit"), saved.get("elapsed_seconds", 0.0),
           ran_in=Path(saved["args"]["out"]))
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.summarize:
        return summarize_only(args)
    out = Path(args.out).resolve()
    saved = load_saved(out, args) if args.resume else {}
    out.mkdir(parents=True, exist_ok=True)
    limits = gate.load_thresholds(args.thresholds)
    langs = args.langs.split(",")
    commit = H.resolve_commit(saved.get("commit") or "HEAD")
    if commit is None:
        sys.exit(f"{PROG}: error: " + (f"the experiment's A commit {saved['commit']} is not in this checkout"
                                       if saved.get("commit") else
                                       "not a git checkout with a commit: the A/B sessions run HEAD's trainers as A"))
    trainers = ["bench", "cpp", "CMakeLists.txt"]
    if subprocess.run(["git", "diff", "--quiet", commit, "--", *trainers], cwd=H.ROOT).returncode:
        sys.exit(f"{PROG}: error: the trainers (bench/, cpp/) differ from {commit[:12]}: commit them first (or, "
                 "with --resume, check out trainers equal to the experiment's), so that the unchanged sessions "
                 "compare the same code")
    start = time.monotonic() - saved.get("elapsed_seconds", 0.0)
    base_path = out / "baseline.json"
    if not args.resume:
        print(f"{PROG}: stored baseline, {args.baseline_repeats} runs per language", flush=True)
        run_session(args, args.baseline_repeats, base_path)
    base = gate.load_run(base_path)
    calib = saved.get("calibrated_step_ms") or {lang: round(step_ms(base, lang, args), 2) for lang in langs}
    records = saved.get("records", [])
    done = {(r["round"], r["slowdown_pct"]) for r in records}
    for rnd in range(1, args.reruns + 1):
        for pct in [0.0, *args.slowdowns]:
            if (rnd, f"{pct:g}") in done:
                continue
            # one sleep for all languages: the slowest language's step sets it, so no language is slowed by less
            sleep = pct / 100 * max(calib.values())
            name = f"round{rnd:02d}-slow{pct:g}"
            results = out / f"{name}-results"
            code, output = run_session(args, args.repeats, out / f"{name}.json", sleep,
                                       ["--gate-ab", commit, "--gate-thresholds", args.thresholds,
                                        "--results-dir", str(results)])
            record = {"round": rnd, "slowdown_pct": f"{pct:g}", "sleep_ms": sleep, "json": f"{name}.json",
                      "ab_baseline_json": f"{results.name}/gate-ab-{commit[:12]}/benchmarks.json",
                      "ab_exit": code, "ab_output": gate_lines(output)}
            record["stored_exit"], record["stored_output"] = stored_gate(out / record["json"], base_path,
                                                                         args.thresholds)
            records.append(record)
            print(f"{PROG}: round {rnd} slowdown {pct:g}%: stored gate exit {record['stored_exit']}, "
                  f"A/B gate exit {code}", flush=True)
            write_json(out, args, calib, records, commit=commit, elapsed_seconds=time.monotonic() - start)
    finish(out, args, limits, calib, records, base, commit, time.monotonic() - start)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except gate.GateError as err:  # a missing or unreadable baseline or session file: one line
        sys.exit(f"{PROG}: error: {err}")
