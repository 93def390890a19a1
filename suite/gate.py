"""The regression gate: a run's benchmarks against a stored pytest-benchmark baseline, failing only where a change
is both beyond its group's threshold (suite/gate.toml) and significant.

    python -m suite.gate RUN.json [--baseline FILE] [--storage DIR] [--thresholds FILE]
    pytest tests/test_benchmarks.py --repeats 5 --gate [--gate-baseline FILE]   (the same gate, at session end)

RUN.json is what pytest-benchmark writes (--benchmark-json, or a file it saved) for tests/test_benchmarks.py:
every sample, with the run (repeat) each came from (extra_info.sample_runs) and the suite's configuration
(extra_info.suite_config). A benchmark is compared only with the baseline benchmark of the same name and the
same configuration; otherwise one line says what differs and there is no verdict. Statistics: suite/stats.py,
over per-run medians. Exit status: 1 when a benchmark regressed (one line each: baseline, now, change, 95%
interval, p), 2 for unusable input, else 0. With no baseline of this configuration for this machine in the
storage, the run is saved there as the first one (exit 0); a baseline is never overwritten: each saved run is a
new numbered file, as pytest-benchmark numbers its own.
"""

import argparse
import json
import math
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from suite import stats
from suite.metrics import METRICS, hooks_set_in, test_function
from suite.report.samples import RunSamples

PROG = "suite.gate"
THRESHOLDS = Path(__file__).with_name("gate.toml")
STORAGE = Path(__file__).resolve().parent.parent / "baselines"  # pytest.ini's --benchmark-storage
FIRST_BASELINE_NAME = "gate-baseline"
# tests/test_benchmarks.py's test functions -> the metric group whose threshold applies
GROUPS = {test: metric.group for test, metric in METRICS.items()}
# What makes a baseline "this machine's": hardware. Software (torch, driver) may differ and is named.
HARDWARE = ("cpu_model", "cpu_threads", "gpu_names")


class GateError(Exception):
    """Unusable input (a file that is not a benchmark run, samples without their runs): exit 2, one line."""


@dataclass(frozen=True)
class Benchmark:
    name: str
    group: str
    samples: RunSamples  # seconds
    config: dict
    hooks: dict  # the trainer test hooks its runs had set (extra_info.test_hooks): no measurement when any


def load_run(path):
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise GateError(f"cannot read benchmark run {path}: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list) or "machine_info" not in doc:
        raise GateError(f"{path} is not a pytest-benchmark file (no 'benchmarks' and 'machine_info')")
    return doc


def runs_of(bench):
    """The benchmark's samples grouped by the run they came from."""
    data, owners = bench["stats"].get("data"), bench.get("extra_info", {}).get("sample_runs")
    if data is None or owners is None or len(owners) != len(data):
        raise GateError(f"{bench['fullname']}: no raw samples with their runs (saved without "
                        "--benchmark-save-data, or not by this suite's tests/test_benchmarks.py)")
    return RunSamples.from_flat(data, owners, "s")


def metrics_of(run):
    """{benchmark name: Metric} for the gated tests of a run document."""
    out = {}
    for bench in run["benchmarks"]:
        test = test_function(bench["name"])
        if test in GROUPS:
            extra = bench.get("extra_info", {})
            out[bench["name"]] = Benchmark(bench["name"], GROUPS[test], runs_of(bench), extra.get("suite_config", {}),
                                           extra.get("test_hooks", {}))
    return out


def load_thresholds(path=THRESHOLDS):
    try:
        table = tomllib.loads(Path(path).read_text())
        groups = {name: float(entry["threshold"]) for name, entry in table["groups"].items()}
        alpha, min_runs = float(table["alpha"]), int(table["min_runs_to_judge"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise GateError(f"bad thresholds file {path}: {err!r}") from None
    missing = sorted(set(GROUPS.values()) - set(groups))
    if missing:
        raise GateError(f"thresholds file {path} has no threshold for {', '.join(missing)}")
    return {"groups": groups, "alpha": alpha, "min_runs_to_judge": min_runs}


def suite_info(run):
    return run["machine_info"].get("torch_api_bench", {})


def same_machine(run, baseline):
    return all(suite_info(run).get(k) == suite_info(baseline).get(k) for k in HARDWARE)


def differences(ours, theirs, skip=()):
    """'field: ours vs theirs' for each field whose value differs (nested dicts flattened with dots)."""
    def flat(d, prefix=""):
        items = {}
        for key, value in d.items():
            if isinstance(value, dict):
                items.update(flat(value, f"{prefix}{key}."))
            else:
                items[f"{prefix}{key}"] = value
        return items
    a, b = flat(ours), flat(theirs)
    return [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
            and k not in skip]


# pytest-benchmark's own machine fields that change without the machine changing (py-cpuinfo reads the clock
# frequency live)
VOLATILE_MACHINE_FIELDS = ("node", "cpu.hz_actual", "cpu.hz_actual_friendly")


def machine_line(run, baseline):
    """One line naming only the machine fields that differ, or None."""
    diff = differences(run["machine_info"], baseline["machine_info"], skip=VOLATILE_MACHINE_FIELDS)
    if not diff:
        return None
    return "machine differs from the baseline's (this run vs baseline): " + "; ".join(diff)


def baseline_files(storage):
    """Every stored run under `storage` (pytest-benchmark's <machine>/<NNNN>_<name>.json), oldest first."""
    return sorted(Path(storage).glob("*/[0-9][0-9][0-9][0-9]_*.json"), key=lambda p: (p.name, str(p)))


def config_key(metric):
    return json.dumps(metric.config, sort_keys=True)


def find_baseline(storage, run, ignore=()):
    """(path, baseline, None) of the newest stored run from this machine that shares a configuration with
    `run`, or (None, None, why not). `ignore`: stored files that are this run itself (a session that also saves
    with --benchmark-save / --benchmark-autosave has already written its own file when the gate runs)."""
    ours = {config_key(m) for m in metrics_of(run).values()}
    ignore = {Path(p).resolve() for p in ignore}
    newest_other = None
    for path in reversed(baseline_files(storage)):
        if path.resolve() in ignore:
            continue
        try:
            candidate = load_run(path)
            theirs = metrics_of(candidate)
        except GateError:
            continue  # a stored run without samples (older suite) cannot be a gate baseline
        if not same_machine(run, candidate):
            continue
        if any(config_key(m) in ours for m in theirs.values()):
            return path, candidate, None
        if theirs:
            newest_other = newest_other or (path, theirs)
    if newest_other is None:
        return None, None, f"no baseline for this machine in {storage}"
    path, theirs = newest_other
    config = next(iter(metrics_of(run).values())).config
    diff = differences(config, next(iter(theirs.values())).config)
    return None, None, (f"no baseline of this configuration for this machine in {storage} (the newest from this "
                        f"machine, {path.name}, differs: {'; '.join(diff)})")


def save_first_baseline(storage, run, machine_id):
    """Save `run` as a new numbered file; never replaces a file."""
    folder = Path(storage) / machine_id
    folder.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name[:4]) for p in folder.glob("[0-9][0-9][0-9][0-9]_*.json")]
    path = folder / f"{max(numbers, default=0) + 1:04d}_{FIRST_BASELINE_NAME}.json"
    with open(path, "x") as f:  # "x": fails rather than overwrite
        json.dump(run, f, indent=1)
    return path


def fmt_value(group, seconds):
    return f"{seconds * 1000:.3f} ms" if group in ("latency", "throughput") else f"{seconds:.3f} s"


def smallest_p(n_a, n_b):
    """The smallest one-sided p a Mann-Whitney test can give with n_a and n_b units: 1 / C(n_a + n_b, n_a)."""
    return 1 / math.comb(n_a + n_b, n_a)


HOOKED = "hooked: not a measurement"


def hooked_note(*metrics):
    """' (hooked: not a measurement: VAR=value ...)' when a side's runs had a trainer test hook set, else ''."""
    hooks = {name: value for metric in metrics for name, value in metric.hooks.items()}
    return f" ({HOOKED}: {', '.join(f'{k}={v}' for k, v in hooks.items())})" if hooks else ""


def judge(metric, base, limits):
    """(regressed, line) for one benchmark against its baseline."""
    threshold, alpha = limits["groups"][metric.group], limits["alpha"]
    head = f"{metric.name} [{metric.group}]{hooked_note(metric, base)}"
    if metric.config != base.config:
        return False, f"NO VERDICT {head}: configuration differs: {'; '.join(differences(metric.config, base.config))}"
    n_now, n_base = metric.samples.n_runs, base.samples.n_runs
    if min(n_now, n_base) < limits["min_runs_to_judge"] or smallest_p(n_now, n_base) > alpha:
        return False, (f"NO VERDICT {head}: {n_now} run(s) now, {n_base} in the baseline; a verdict needs "
                       f"{limits['min_runs_to_judge']}+ on each side and a possible p <= {alpha} (use --repeats)")
    cmp = stats.compare_runs(metric.samples.runs, base.samples.runs, min_runs=1)  # over per-run medians, always
    change = cmp.ratio - 1
    regressed = change > threshold and cmp.p_greater <= alpha
    interval = f"[{cmp.low - 1:+.1%}, {cmp.high - 1:+.1%}]" if cmp.low is not None else "[n/a]"
    word = "REGRESSION" if regressed else ("faster" if change < 0 else "ok")
    return regressed, (f"{word} {head}: baseline {fmt_value(metric.group, base.samples.median_of_runs)}, "
                       f"now {fmt_value(metric.group, metric.samples.median_of_runs)}, "
                       f"change {change:+.1%} {interval} (95% CI), p={cmp.p_greater:.3g}, "
                       f"threshold +{threshold:.0%}, alpha {alpha} ({n_now} vs {n_base} runs)")


def compare(run, baseline, limits):
    """(regressions, lines): every benchmark of `run` judged against `baseline`."""
    now, base = metrics_of(run), metrics_of(baseline)
    regressions, lines = [], []
    for name, metric in now.items():
        if name not in base:
            lines.append(f"NO VERDICT {name}: not in the baseline")
            continue
        regressed, line = judge(metric, base[name], limits)
        lines.append(line)
        if regressed:
            regressions.append(line)
    lines += [f"NO VERDICT {name}: in the baseline, not in this run (skipped, failed or not requested)"
              for name in base if name not in now]
    return regressions, lines


def interleaved_baseline(run, docs_for, commit):
    """The interleaved A/B gate's baseline: `run`'s benchmarks (this tree's trainers, B) with the samples that the
    baseline commit's trainers (A) measured in the same session, alternating with B's, computed by the same
    functions (suite/metrics.py). docs_for(model, mode, lang): A's results documents, or why A's runs failed. A
    benchmark A did not measure (e.g. an inference path it lacks) is left out: no verdict for it."""
    benches = []
    for bench in run["benchmarks"]:
        test, params = test_function(bench["name"]), bench.get("params") or {}
        if test not in METRICS:
            continue
        docs = docs_for(params["model"], params["mode"], params["lang"])
        if isinstance(docs, str):
            raise GateError(f"the baseline commit's run failed: {docs}")
        samples = METRICS[test].samples(docs, params)
        if not samples.complete:
            continue
        benches.append({"name": bench["name"], "fullname": bench["fullname"], "group": bench.get("group"),
                        "params": params, "stats": {"data": samples.flat()},
                        "extra_info": {"sample_runs": samples.sample_runs(),
                                       "suite_config": bench.get("extra_info", {}).get("suite_config", {}),
                                       "test_hooks": hooks_set_in(docs)}})
    return {"machine_info": run["machine_info"], "commit_info": {"id": commit, "interleaved_baseline": True},
            "benchmarks": benches}


def run_gate(run, storage=STORAGE, baseline_path=None, thresholds=THRESHOLDS, machine_id=None, write=print,
             verbose=False, baseline=None, ignore=()):
    """The gate; returns its exit status (0 pass, no verdict or first baseline saved, 1 regression). Raises
    GateError. `baseline`: a baseline document already in hand (the interleaved A/B gate's), named by
    `baseline_path`; `ignore`: stored files find_baseline must pass over (this run's own saves)."""
    limits = load_thresholds(thresholds)
    if not metrics_of(run):
        raise GateError("the run has no benchmark of tests/test_benchmarks.py to gate")
    if baseline is not None:
        pass
    elif baseline_path:
        baseline = load_run(baseline_path)
    else:
        baseline_path, baseline, why = find_baseline(storage, run, ignore)
        if baseline is None:
            from pytest_benchmark.utils import get_machine_id

            stored = {p.resolve() for p in baseline_files(storage)}
            saved = next((p for p in ignore if Path(p).resolve() in stored), None)  # saved by the session itself
            saved = saved or save_first_baseline(storage, run, machine_id or get_machine_id())
            write(f"torch-api-bench gate: {why}; saved this run as the first: {saved}. Nothing to compare: pass.")
            return 0
    write(f"torch-api-bench gate: baseline {baseline_path}")
    line = machine_line(run, baseline)
    if line:
        write(f"torch-api-bench gate: {line}")
    regressions, lines = compare(run, baseline, limits)
    for line in lines:
        if verbose or not line.startswith(("ok ", "faster ")):
            write(f"torch-api-bench gate: {line}")
    compared = sum(not x.startswith("NO VERDICT") for x in lines)
    outcome = "" if regressions else (": pass" if compared else ": NO VERDICT (nothing could be judged)")
    hooked = f" ({HOOKED}: runs with trainer test hooks set)" if any(HOOKED in x for x in lines) else ""
    write(f"torch-api-bench gate: {len(regressions)} regression(s) in {compared} compared benchmark(s), "
          f"{len(lines) - compared} without a verdict{outcome}{hooked}")
    return 1 if regressions else 0


def parse_args(argv):
    p = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="pytest-benchmark JSON of the run to check (--benchmark-json)")
    p.add_argument("--baseline", help="compare with this stored run (default: the newest of this machine and "
                                      "configuration in --storage)")
    p.add_argument("--storage", default=str(STORAGE), help="pytest-benchmark storage folder (default baselines/)")
    p.add_argument("--thresholds", default=str(THRESHOLDS), help="thresholds file (default suite/gate.toml)")
    p.add_argument("-v", "--verbose", action="store_true", help="a line for every benchmark, passing ones too")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        return run_gate(load_run(args.run), args.storage, args.baseline, args.thresholds, verbose=args.verbose,
                        ignore=[args.run])
    except GateError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
