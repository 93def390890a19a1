"""The regression gate (suite/gate.py) and like-with-like comparison.

The decision logic is tested on constructed runs, where the truth is known. The end-to-end tests run real
`pytest` sessions of tests/test_benchmarks.py in this process (pytester; tiny configuration, own benchmark
storage, the repository's baselines untouched): save the first baseline, pass unchanged, fail when every training
step is slower. The slowdown is the trainers' recorded test hook BENCH_ADD_MS_PER_STEP, which adds a known time to
every step's record without waiting (the gate marks such runs: no measurement): a threshold of +10000% against a
slowdown of thousands of times the step time, margins no machine's noise reaches.
"""

import json
import statistics
from pathlib import Path

import pytest

from suite import gate
from suite import harness as H
from suite.metrics import hooks_set_in

CONFIG = {"preset": "smoke", "batch_size": 32, "epochs": 3}
MACHINE = {"node": "a", "torch_api_bench": {"cpu_model": "cpu", "cpu_threads": 2, "gpu_names": [], "torch": "2.14"}}
EPOCH = "test_epoch_time[resnet18-python-default]"
LATENCY = "test_latency[resnet18-python-default-eager-bs{}]"
LIMITS = {"groups": {g: 0.03 for g in gate.GROUPS.values()}, "alpha": 0.01, "min_runs_to_judge": 3}


def bench(name, runs, config=CONFIG):
    return {"name": name, "fullname": f"tests/test_benchmarks.py::{name}",
            "stats": {"data": [s for r in runs for s in r]},
            "extra_info": {"sample_runs": [i for i, r in enumerate(runs, 1) for _ in r], "suite_config": config}}


def run_doc(runs, config=CONFIG, machine=MACHINE, name=EPOCH):
    return {"machine_info": json.loads(json.dumps(machine)), "commit_info": {},
            "benchmarks": [bench(name, runs, config)]}


def steady(level, n_runs, jitter=0.005):
    """n_runs runs of 3 epochs around `level` seconds, each run a little different (as processes are)."""
    return [[level * (1 + jitter * ((i * 7 + k * 3) % 5 - 2)) for k in range(3)] for i in range(n_runs)]


def verdict(now, base, limits=LIMITS):
    regressions, lines = gate.compare(now, base, limits)
    [line] = lines
    return bool(regressions), line


def test_a_clear_slowdown_over_runs_is_a_regression_with_its_numbers():
    regressed, line = verdict(run_doc(steady(1.10, 5)), run_doc(steady(1.0, 10)))
    assert regressed and line.startswith(f"REGRESSION {EPOCH} [epoch_time]: baseline 1.000 s, now 1.100 s")
    assert "change +10.0%" in line and "95% CI" in line and "p=" in line and "(5 vs 10 runs)" in line


def test_unchanged_runs_pass():
    regressed, line = verdict(run_doc(steady(1.0, 5)), run_doc(steady(1.0, 10)))
    assert not regressed and line.startswith("ok ")


def p_of(line):
    return float(line.split("p=")[1].split(",")[0])


def test_a_change_beyond_the_threshold_but_within_noise_is_not_a_regression():
    noisy = [[1.0 * f] * 3 for f in (0.8, 1.3, 1.1, 0.9, 1.2)]  # runs spread +-25%: a 10% shift is not evidence
    base = [[1.0 * f] * 3 for f in (0.85, 1.25, 1.0, 0.95, 1.05)]
    regressed, line = verdict(run_doc(noisy), run_doc(base))
    assert not regressed and "change +10.0%" in line and p_of(line) > LIMITS["alpha"]  # beyond 3%, not significant


def test_a_significant_change_below_the_threshold_is_not_a_regression():
    regressed, line = verdict(run_doc(steady(1.01, 5, jitter=0.0005)), run_doc(steady(1.0, 10, jitter=0.0005)))
    assert not regressed and "change +1.0%" in line and p_of(line) <= LIMITS["alpha"]  # significant, below 3%


def test_another_configuration_gets_one_line_and_no_verdict():
    other = {**CONFIG, "batch_size": 128}
    regressed, line = verdict(run_doc(steady(2.0, 5), config=other), run_doc(steady(1.0, 10)))
    assert not regressed
    assert line == f"NO VERDICT {EPOCH} [epoch_time]: configuration differs: batch_size: 128 vs 32"


def test_too_few_runs_for_the_significance_level_give_no_verdict():
    regressed, line = verdict(run_doc(steady(2.0, 2)), run_doc(steady(1.0, 10)))
    assert not regressed and line.startswith("NO VERDICT") and "use --repeats" in line
    # 3 against 3 runs: the smallest possible p is 1/20 = 0.05, above alpha 0.01
    regressed, line = verdict(run_doc(steady(2.0, 3)), run_doc(steady(1.0, 3)))
    assert not regressed and line.startswith("NO VERDICT")


def test_no_baseline_saves_the_first_and_never_overwrites(tmp_path):
    out = []
    code = gate.run_gate(run_doc(steady(1.0, 5)), tmp_path, machine_id="m", write=out.append)
    assert code == 0 and "no baseline for this machine" in out[-1] and "saved this run as the first" in out[-1]
    first = tmp_path / "m" / f"0001_{gate.FIRST_BASELINE_NAME}.json"
    assert json.loads(first.read_text())["benchmarks"][0]["stats"]["data"] == [s for r in steady(1.0, 5) for s in r]
    # The same machine, another configuration: saved as a new file beside the first, which stays as it was.
    before = first.read_text()
    code = gate.run_gate(run_doc(steady(1.0, 5), config={**CONFIG, "epochs": 5}), tmp_path, machine_id="m",
                         write=out.append)
    assert code == 0 and "no baseline of this configuration" in out[-1] and "epochs: 5 vs 3" in out[-1]
    assert (tmp_path / "m" / f"0002_{gate.FIRST_BASELINE_NAME}.json").is_file() and first.read_text() == before
    # Now a slowed run of the first configuration finds the first baseline and fails.
    code = gate.run_gate(run_doc(steady(1.2, 5)), tmp_path, machine_id="m", write=out.append)
    assert code == 1 and any(line.startswith("torch-api-bench gate: REGRESSION") for line in out)


def test_a_benchmark_missing_from_this_run_is_named():
    base = run_doc(steady(1.0, 10))
    base["benchmarks"].append(bench(LATENCY.format(1), steady(0.01, 10)))
    regressions, lines = gate.compare(run_doc(steady(1.0, 5)), base, LIMITS)
    assert not regressions and f"NO VERDICT {LATENCY.format(1)}: in the baseline, not in this run" in lines[-1]


def test_this_runs_own_save_is_not_its_baseline(tmp_path):
    """--gate with --benchmark-save: pytest-benchmark has written this run's file when the gate runs. The gate
    passes over it (no comparison of a run with itself) and names it as the first baseline instead of saving a
    copy; a stored run of this machine without gated benchmarks is no baseline either."""
    run = run_doc(steady(1.0, 5))
    own = tmp_path / "m" / "0002_mine.json"
    own.parent.mkdir()
    (tmp_path / "m" / "0001_other-tests.json").write_text(json.dumps({**run, "benchmarks": []}))
    own.write_text(json.dumps(run))
    out = []
    assert gate.run_gate(run, tmp_path, machine_id="m", write=out.append, ignore=[own]) == 0
    assert "no baseline for this machine" in out[-1] and f"saved this run as the first: {own}" in out[-1]
    assert sorted(p.name for p in own.parent.iterdir()) == ["0001_other-tests.json", "0002_mine.json"]
    out.clear()
    assert gate.main([str(own), "--storage", str(tmp_path)]) == 0  # the CLI, on a file inside the storage


def test_a_baseline_of_other_hardware_is_not_this_machines(tmp_path):
    other = {**MACHINE, "torch_api_bench": {**MACHINE["torch_api_bench"], "cpu_model": "another cpu"}}
    gate.save_first_baseline(tmp_path, run_doc(steady(1.0, 5), machine=other), "m")
    path, baseline, why = gate.find_baseline(tmp_path, run_doc(steady(1.0, 5)))
    assert baseline is None and why.startswith("no baseline for this machine")


def test_the_machine_line_names_only_what_differs():
    newer = {**MACHINE, "node": "b", "torch_api_bench": {**MACHINE["torch_api_bench"], "torch": "2.15"}}
    line = gate.machine_line(run_doc([[1]], machine=newer), run_doc([[1]]))
    assert line.endswith("torch_api_bench.torch: '2.15' vs '2.14'")  # not the host name, not the rest
    assert gate.machine_line(run_doc([[1]]), run_doc([[1]])) is None


def test_unusable_input_is_one_line_and_exit_2(tmp_path, capsys):
    doc = run_doc(steady(1.0, 5))
    del doc["benchmarks"][0]["extra_info"]["sample_runs"]
    (tmp_path / "run.json").write_text(json.dumps(doc))
    assert gate.main([str(tmp_path / "run.json"), "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("suite.gate: error: ") and "sample" in err and "\n" not in err
    (tmp_path / "bad.json").write_text("[]")
    assert gate.main([str(tmp_path / "bad.json")]) == 2
    assert "not a pytest-benchmark file" in capsys.readouterr().err


def test_the_interleaved_baseline_holds_the_other_trees_samples_under_the_same_names():
    """The A/B gate's baseline: for each of this run's benchmarks, the same metric (suite/metrics.py) from the
    baseline commit's documents; what the baseline did not measure is left out (no verdict), not invented."""
    def doc(epochs, startup, latency_ms):
        return {"epochs": [{"train_seconds": s} for s in epochs], "startup_seconds": startup,
                "latency": [{"path": "eager", "batch_size": 1, "samples_ms": latency_ms}]}
    params = {"model": "resnet18", "lang": "python", "mode": "default"}
    run = run_doc(steady(1.0, 3))
    run["benchmarks"][0]["params"] = params
    for name, extra in [("test_startup[resnet18-python-default]", {}),
                        (LATENCY.format(1), {"latency_path": "eager", "latency_bs": 1}),
                        (LATENCY.format(8), {"latency_path": "eager", "latency_bs": 8})]:
        run["benchmarks"].append({**bench(name, [[1.0]] * 3), "params": {**params, **extra}})
    docs = [doc([3.0, 2.0, 2.2], 1.5, [10.0, 12.0]), doc([3.1, 2.1, 2.3], None, [11.0, 13.0])]
    base = gate.interleaved_baseline(run, lambda model, mode, lang: docs, "abc")
    got = {b["name"]: (b["stats"]["data"], b["extra_info"]["sample_runs"]) for b in base["benchmarks"]}
    assert got == {EPOCH: ([2.0, 2.2, 2.1, 2.3], [1, 1, 2, 2]),
                   LATENCY.format(1): ([0.010, 0.012, 0.011, 0.013], [1, 1, 2, 2])}
    assert all(b["extra_info"]["suite_config"] == CONFIG for b in base["benchmarks"])
    with pytest.raises(gate.GateError, match="baseline commit's run failed: python trainer failed"):
        gate.interleaved_baseline(run, lambda *key: "python trainer failed (exit 2)", "abc")


def test_the_thresholds_file_covers_every_group():
    limits = gate.load_thresholds()
    assert set(limits["groups"]) == set(gate.GROUPS.values())
    assert 0 < limits["alpha"] < 0.1 and limits["min_runs_to_judge"] >= 3


# ---------------------------------------------------------------------------------------------------------
# End to end: real pytest sessions
# ---------------------------------------------------------------------------------------------------------

# One step of 8 images an epoch: the gate needs numbers, not work.
TINY = ["--device", "cpu", "--models", "resnet18", "--train-limit", "8", "--test-limit", "8", "--batch-size", "8",
        "--epochs", "2", "--latency-iters", "3", "--latency-batch-sizes", "1", "--threads", "1", "--warmup-steps", "0"]
# A test's own thresholds: +10000% and alpha 0.05, reachable with 3 runs a side (smallest p 1/20). An unchanged
# rerun is never 101 times slower in all three runs, whatever the machine's load does between sessions.
LOOSE = "alpha = 0.05\nmin_runs_to_judge = 3\n" + "".join(f"[groups.{group}]\nthreshold = 100.0\n"
                                                 for group in sorted(set(gate.GROUPS.values())))
# 1000 s added to each step's record (a step takes a fraction of a second here): never waited for.
ADDED_MS = 1_000_000


def machine_torch():
    import torch

    return torch.__version__


@pytest.fixture
def benchmarks_session(suite_session, pytester):
    """benchmarks_session(*args): a session of tests/test_benchmarks.py with TINY, from pytester's folder, its
    benchmark storage there (relative: pytest-benchmark's own machine-info warning fails on a storage folder
    outside the working directory), with pytester's folder's loose.toml as thresholds."""
    (pytester.path / "loose.toml").write_text(LOOSE)
    return lambda *args: suite_session("test_benchmarks.py", "--benchmark-storage=file://./storage", *TINY, *args)


def test_gate_end_to_end_first_baseline_unchanged_and_slowed(benchmarks_session, pytester, monkeypatch, cpp_exe):
    tmp_path = pytester.path
    common = ["--build-dir", str(cpp_exe.parent), "--langs", "cpp", "--repeats", "3", "--gate",
              "--gate-thresholds", str(tmp_path / "loose.toml")]

    # 1. No baseline: this run becomes the first, with every sample and the run it came from.
    results = tmp_path / "results"
    proc, out = benchmarks_session(*common, "--results-dir", str(results))
    assert proc.ret == 0, out[-3000:]
    assert "no baseline for this machine" in out and "saved this run as the first" in out
    [saved] = (tmp_path / "storage").glob(f"*/0001_{gate.FIRST_BASELINE_NAME}.json")
    stored = {b["name"]: b for b in json.loads(saved.read_text())["benchmarks"]}
    docs = [json.loads((results / f"cpp-resnet18-default-r{r}.json").read_text()) for r in (1, 2, 3)]
    assert [d["config"]["repeat"] for d in docs] == [1, 2, 3]
    epoch = stored["test_epoch_time[resnet18-cpp-default]"]
    assert epoch["stats"]["data"] == [e["train_seconds"] for d in docs for e in d["epochs"][1:]]
    assert epoch["extra_info"]["sample_runs"] == [1, 2, 3]
    assert epoch["extra_info"]["test_hooks"] == {}
    assert stored["test_first_epoch[resnet18-cpp-default]"]["stats"]["data"] == \
        [d["epochs"][0]["train_seconds"] for d in docs]
    assert stored["test_startup[resnet18-cpp-default]"]["stats"]["data"] == [d["startup_seconds"] for d in docs]

    # 2. Unchanged: the gate finds that baseline and passes.
    proc, out = benchmarks_session(*common)
    assert proc.ret == 0, out[-3000:]
    assert f"baseline {saved}" in out and "0 regression(s)" in out and gate.HOOKED not in out

    # 3. Every training step slower: the gate fails, one line naming the benchmark and its numbers, marked as hooked.
    monkeypatch.setenv("BENCH_ADD_MS_PER_STEP", str(ADDED_MS))
    proc, out = benchmarks_session(*common)
    print(out[-2000:])
    assert proc.ret == 1, out[-3000:]
    [line] = [x for x in out.splitlines() if "REGRESSION" in x and "test_epoch_time" in x]
    assert "baseline" in line and "now" in line and "change +" in line and "p=0.05" in line
    assert f"({gate.HOOKED}: BENCH_ADD_MS_PER_STEP={ADDED_MS})" in line
    assert "Traceback" not in out


# Thorough: two sessions and five trainer runs (about 15 s on 2 cores). The default tier keeps its rules as units:
# test_another_configuration_gets_one_line_and_no_verdict, test_the_machine_line_names_only_what_differs.
@pytest.mark.thorough
def test_compare_pairs_like_with_like_and_names_machine_differences(benchmarks_session, pytester, cpp_exe):
    """pytest-benchmark's --benchmark-compare against a run of another configuration: one line saying what
    differs, no verdict (so no failure even at 1%); the machine warning names only the fields that differ.
    Also: with --repeats the languages alternate, each run a fresh process."""
    tmp_path = pytester.path
    build = ["--build-dir", str(cpp_exe.parent)]
    proc, out = benchmarks_session(*build, "--langs", "cpp", "--epochs", "1", "--benchmark-save=small")
    assert proc.ret == 0, out[-3000:]
    [saved] = (tmp_path / "storage").glob("*/0001_small.json")
    doctored = json.loads(saved.read_text())
    doctored["machine_info"]["torch_api_bench"]["torch"] = "0.0-doctored"
    saved.write_text(json.dumps(doctored))

    results = tmp_path / "results"
    proc, out = benchmarks_session(*build, "--langs", "python,cpp", "--repeats", "2", "--epochs", "2",
                                   "--benchmark-compare=0001", "--benchmark-compare-fail=median:1%",
                                   "--results-dir", str(results))
    assert proc.ret == 0, out[-3000:]
    assert "not compared, no verdict: their configuration differs (this run vs stored): epochs: 2 vs 1" in out
    assert "machine_info is different" not in out
    machine = [x for x in out.splitlines() if "machine differs from the baseline" in x]
    assert machine and machine[0].endswith(f"torch_api_bench.torch: {machine_torch()!r} vs '0.0-doctored'")
    assert "python_version" not in machine[0] and "cpu_model" not in machine[0]
    order = sorted(results.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    assert [p.name for p in order] == ["python-resnet18-default-r1.json", "cpp-resnet18-default-r1.json",
                                       "python-resnet18-default-r2.json", "cpp-resnet18-default-r2.json"]


# Thorough: six trainer processes and a C++-less export of HEAD (about 30 s on 2 cores). Its parts stay in the default
# tier: the baseline built from the other tree's documents (test_the_interleaved_baseline_holds_...), the gate's
# verdict on a hooked slowdown (test_gate_end_to_end_...).
@pytest.mark.thorough
def test_interleaved_ab_gate_alternates_the_trees_and_fails_the_slowed_one(benchmarks_session, pytester,
                                                                           monkeypatch):
    """--gate-ab HEAD: HEAD's trainers (A, exported from git) and this tree's (B) alternate A B, B A, A B; the test
    hook slows B only (A runs as committed), and the gate, comparing B with A from the same session, fails."""
    if H.resolve_commit("HEAD") is None:
        pytest.skip("not a git checkout with a commit: nothing to export as the baseline side")
    tmp_path = pytester.path
    results = tmp_path / "results"
    monkeypatch.setenv("BENCH_ADD_MS_PER_STEP", str(ADDED_MS))
    proc, out = benchmarks_session("--langs", "python", "--repeats", "3", "--gate-ab", "HEAD", "--gate-thresholds",
                                   str(tmp_path / "loose.toml"), "--results-dir", str(results))
    print(out[-2000:])
    assert proc.ret == 1, out[-3000:]
    [line] = [x for x in out.splitlines() if "REGRESSION" in x and "test_epoch_time" in x]
    assert "change +" in line and "(3 vs 3 runs)" in line and gate.HOOKED in line
    [a_dir] = results.glob("gate-ab-*")
    assert f"baseline commit {H.resolve_commit('HEAD')[:12]}'s trainers, run alternately with this tree's" in out
    files = sorted([*results.glob("*.json"), *a_dir.glob("python-*.json")], key=lambda p: p.stat().st_mtime_ns)
    order = [("A" if p.parent == a_dir else "B") + p.stem[-1] for p in files]
    assert order == ["A1", "B1", "B2", "A2", "A3", "B3"]
    a_docs = [json.loads(p.read_text()) for p in a_dir.glob("python-*.json")]
    b_docs = [json.loads(p.read_text()) for p in results.glob("python-*.json")]
    # The hook is this tree's only (B): A runs as committed, and the documents say which runs were hooked.
    assert all(not hooks_set_in([d]) for d in a_docs)
    assert all(hooks_set_in([d]) == {"BENCH_ADD_MS_PER_STEP": str(ADDED_MS)} for d in b_docs)
    a_epochs = [e["train_seconds"] for d in a_docs for e in d["epochs"]]
    b_epochs = [e["train_seconds"] for d in b_docs for e in d["epochs"]]
    added_s = ADDED_MS / 1000  # every B epoch (one step) holds it; no A epoch comes near it
    assert min(b_epochs) >= added_s and max(a_epochs) < added_s, (a_epochs, b_epochs)
    assert statistics.median(a_epochs) + added_s / 2 < statistics.median(b_epochs)
    saved = json.loads((a_dir / "benchmarks.json").read_text())
    assert {b["name"] for b in saved["benchmarks"]} >= {"test_epoch_time[resnet18-python-default]"}


@pytest.mark.parametrize("args, message", [
    (["--repeats", "0"], "--repeats must be 1 or more, got 0"),
    (["--gate", "--repeats", "2"], "--gate needs --repeats 3 or more"),
    (["--gate-ab", "HEAD", "--repeats", "2"], "--gate-ab needs --repeats 3 or more"),
    (["--gate-ab", "HEAD", "--repeats", "4"], "--gate-ab needs --repeats 5 or more: with 4 runs a side the smallest "
                                              "possible p is 0.0143, above alpha 0.01"),
    (["--gate-ab", "no-such-revision-xyz", "--repeats", "5"], "--gate-ab: git does not know the revision"),
    (["--gate-ab", "HEAD", "--gate", "--repeats", "5"], "--gate-ab REV compares with REV's trainers"),
    (["--gate-baseline", "x.json"], "--gate-baseline and --gate-thresholds are options of the gate: add --gate"),
])
def test_bad_gate_options_are_usage_errors(suite_session, args, message):
    proc, out = suite_session("test_benchmarks.py", *args)
    assert proc.ret == 4, out[-2000:]
    assert message in out


def test_gate_power_tables_count_false_alarms_and_detections(tmp_path, monkeypatch):
    """suite.experiments.gate_power --summarize on a constructed experiment (one round: unchanged, and 20% slower): both
    modes fail the slowed session and pass the unchanged one, from 5 repeats a side (alpha 0.01), and say so."""
    from suite.experiments import gate_power

    monkeypatch.setattr(gate_power, "SIMULATIONS", 50)
    (tmp_path / "baseline.json").write_text(json.dumps(run_doc(steady(1.0, 10))))
    records = []
    for pct, level in (("0", 1.0), ("20", 1.2)):
        name = f"round01-slow{pct}"
        (tmp_path / f"{name}.json").write_text(json.dumps(run_doc(steady(level, 5))))
        a = tmp_path / f"{name}-results" / "gate-ab-x" / "benchmarks.json"
        a.parent.mkdir(parents=True)
        a.write_text(json.dumps(run_doc(steady(1.0, 5))))
        records.append({"round": 1, "slowdown_pct": pct, "sleep_ms": 0.0, "json": f"{name}.json",
                        "ab_baseline_json": str(a.relative_to(tmp_path))})
    args = {"reruns": 1, "slowdowns": [20.0], "repeats": 5, "baseline_repeats": 10, "langs": "python",
            "train_limit": 256, "batch_size": 32, "epochs": 3, "out": str(tmp_path)}
    (tmp_path / "gate-power.json").write_text(json.dumps({"args": args, "calibrated_step_ms": {"python": 400.0},
                                                          "records": records}))
    assert gate_power.main(["--out", str(tmp_path), "--summarize"]) == 0
    summary = json.loads((tmp_path / "gate-power.json").read_text())["summary"]
    at = {(r["mode"], r["slowdown_pct"], r["repeats"]): r["hits"] for r in summary}
    for mode in gate_power.MODES:
        assert at[mode, "0", 5] == 0 and at[mode, "20", 5] == 1
    assert at["ab", "20", 3] == 0  # 3 against 3: the smallest p is 1/20, above alpha
    md = (tmp_path / "gate-power.md").read_text()
    assert "| 20%: detections (epoch time) | 0/1 | 0/1 | 1/1 |" in md and "FAILS: test_epoch_time" in md


def test_gate_power_resume_runs_only_the_sessions_an_experiment_lacks(tmp_path, monkeypatch):
    """suite.experiments.gate_power --resume of an experiment cut off after its first session: the baseline and that
    session are kept, the two it lacks run (with the experiment's A commit and sleeps), and the tables cover all
    three."""
    from types import SimpleNamespace

    from suite.experiments import gate_power

    commit = H.resolve_commit("HEAD")
    if commit is None:
        pytest.skip("not a git checkout with a commit: an experiment's A commit must resolve")
    monkeypatch.setattr(gate_power, "SIMULATIONS", 50)
    monkeypatch.setattr(gate_power, "subprocess", SimpleNamespace(run=lambda *a, **k: SimpleNamespace(returncode=0)))
    monkeypatch.setattr(gate_power, "stored_gate", lambda *a: (0, []))
    ran = []

    def fake_session(args, repeats, json_path, sleep_ms=0.0, extra=()):
        ran.append((Path(json_path).name, round(sleep_ms, 3), extra[1]))
        Path(json_path).write_text(json.dumps(run_doc(steady(1.0 + sleep_ms / 400, repeats))))
        a = Path(extra[-1]) / f"gate-ab-{extra[1][:12]}" / "benchmarks.json"
        a.parent.mkdir(parents=True)
        a.write_text(json.dumps(run_doc(steady(1.0, repeats))))
        return 0, ""

    monkeypatch.setattr(gate_power, "run_session", fake_session)
    (tmp_path / "baseline.json").write_text(json.dumps(run_doc(steady(1.0, 10))))
    fake_session(None, 5, tmp_path / "round01-slow0.json", 0.0, ["--gate-ab", commit, "--results-dir",
                                                                  str(tmp_path / "round01-slow0-results")])
    done = {"round": 1, "slowdown_pct": "0", "sleep_ms": 0.0, "json": "round01-slow0.json",
            "ab_baseline_json": f"round01-slow0-results/gate-ab-{commit[:12]}/benchmarks.json"}
    args = {"reruns": 1, "slowdowns": [10.0, 20.0], "repeats": 5, "baseline_repeats": 10, "langs": "python",
            "train_limit": 256, "batch_size": 32, "epochs": 3, "out": str(tmp_path)}
    (tmp_path / "gate-power.json").write_text(json.dumps({"args": args, "calibrated_step_ms": {"python": 400.0},
                                                          "records": [done], "commit": commit}))
    ran.clear()
    assert gate_power.main(["--out", str(tmp_path), "--resume"]) == 0
    assert ran == [("round01-slow10.json", 40.0, commit), ("round01-slow20.json", 80.0, commit)]
    saved = json.loads((tmp_path / "gate-power.json").read_text())
    assert [r["slowdown_pct"] for r in saved["records"]] == ["0", "10", "20"]
    assert {r["slowdown_pct"] for r in saved["summary"]} == {"0", "10", "20"}
