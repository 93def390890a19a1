"""suite.experiments.gpu_session, the one GPU-session command: its budget logic on constructed stages (fast), its
plan's stages and early stops, and (thorough) its --dry-run: the same stages, markers, budget, resume, results,
benchmark storage and report as on a GPU, tiny and on the CPU."""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from bench.vocab import LANGUAGES
from suite import harness as H
from suite.experiments import gpu_session as G
from suite.schema import load_results

PY = sys.executable


def session(*args, env=None):
    return subprocess.run([PY, "-m", "suite.experiments.gpu_session", *args], cwd=H.ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)


def ctx(*args):
    parsed, _ = G.parse_args(list(args))
    c = G.Ctx(parsed)
    c.table = {st.name: st for st in G.stages(c)}
    return c


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "BENCH_CACHE": str(tmp_path / "cache")}  # the tiny set is this test's own


# ---- the budget, on constructed stages ------------------------------------------------------------------------

def python(code):
    return [PY, "-c", code]


def constructed(c, stages, seconds):
    """`c` running `stages` (the table) with these estimates."""
    c.plan = dataclasses.replace(c.plan, seconds=seconds)
    c.table = {st.name: st for st in stages}
    return stages


def test_budget_starts_what_fits_in_order_and_stops_an_overrun_with_its_processes(tmp_path, monkeypatch, capsys):
    """A stage starts only when its estimate fits in what is left less the report's; one that does not is left for
    the next run while smaller ones after it run; a stage that outlives the budget is stopped, child processes
    included, and leaves no marker; after it nothing starts but the report, and the whole run ends in time."""
    monkeypatch.setattr(G, "STOP_GRACE_S", 0.5)
    monkeypatch.setattr(G, "ARCHIVE_S", 0)
    budget_s = 5.0
    c = ctx("--dry-run", "--out", str(tmp_path / "s"), "--budget", str(budget_s))
    child_pid = tmp_path / "child.pid"
    sleeper = python("import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', 'import time; "
                     f"time.sleep(60)']); open({str(child_pid)!r}, 'w').write(str(p.pid)); p.wait()")
    stages = constructed(c, [
        G.Stage("first", "fits", lambda c: [python("pass")]),
        G.Stage("big", "does not fit", lambda c: [python("pass")]),
        G.Stage("after-big", "fits after one that did not", lambda c: [python("pass")]),
        G.Stage("needs-big", "waits for it", lambda c: [python("pass")], needs=("big",)),
        G.Stage("overrun", "outlives the budget", lambda c: [sleeper]),
        G.Stage("late", "would fit, but the budget is spent", lambda c: [python("pass")]),
        G.Stage("report", "the report", lambda c: [python("pass")], finishing=True),
    ], {"first": 0.1, "big": 10_000, "after-big": 0.1, "needs-big": 0.1, "overrun": 0.1, "late": 0.1, "report": 1.5})
    outcomes, t0 = {}, time.perf_counter()
    G.run_stages(c, stages, outcomes)
    took = time.perf_counter() - t0
    assert {n: o.status for n, o in outcomes.items()} == {
        "first": "ok", "big": G.NO_TIME, "after-big": "ok", "needs-big": G.WAITING, "overrun": G.CUT_OFF,
        "late": G.NO_TIME, "report": "ok"}
    assert took < budget_s, f"the run took {took:.1f}s of a {budget_s}s budget"
    assert sorted(p.stem for p in (c.out / "stages").glob("*.json")) == ["after-big", "first", "report"]
    out = capsys.readouterr().out
    assert re.search(r"NOT STARTED big: its estimate 10000s is more than the \ds left", out), out
    assert "STOPPED overrun" in out and "WAITING needs-big: needs big" in out
    assert not running(int(child_pid.read_text())), "the stage's child process outlived it"


def running(pid):
    """Whether process `pid` exists and is not a zombie (an orphan's zombie waits for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_a_marker_counts_only_while_its_products_exist(tmp_path, capsys):
    """A stage whose marker says ok is skipped; once what it made is gone (a fresh machine keeps the output folder
    but not the build), it runs again (what others finished with it stands); a stage that needs one that failed
    does not run."""
    c = ctx("--dry-run", "--out", str(tmp_path / "s"))
    made = tmp_path / "made"
    stages = constructed(c, [
        G.Stage("make", "makes a file", lambda c: [python(f"open({str(made)!r}, 'w')")], products=lambda c: [made]),
        G.Stage("use", "needs it", lambda c: [python(f"open({str(made)!r})")], needs=("make",)),
    ], {"make": 1, "use": 1})
    for _ in range(2):
        outcomes = {}
        G.run_stages(c, stages, outcomes)
    assert [o.status for o in outcomes.values()] == ["ok (earlier)", "ok (earlier)"]
    made.unlink()
    outcomes = {}
    G.run_stages(c, stages, outcomes)
    assert outcomes["make"].status == "ok" and made.exists()
    assert f"redoing make: its marker says ok but {made} is gone" in capsys.readouterr().out
    c.table["make"] = dataclasses.replace(stages[0], commands=lambda c: [python("raise SystemExit(3)")])
    made.unlink()
    c.marker("use").unlink()
    outcomes = {}
    G.run_stages(c, [c.table["make"], stages[1]], outcomes)
    assert outcomes["make"].failed and outcomes["use"].status == "not run" and outcomes["use"].failed


# ---- the plan -------------------------------------------------------------------------------------------------

def test_plan_puts_the_decisive_stages_first_and_they_fit_in_one_call_of_9_minutes(tmp_path):
    c = ctx("--out", str(tmp_path / "s"))
    names = list(c.table)
    decisive = ["build", "correctness", "data-synthetic", "matrix-resnet18-default", "matrix-resnet18-bf16-cl"]
    assert names[:5] == decisive and names[5] == "sweep" and names[-1] == "report"
    assert c.table["report"].finishing and not any(st.finishing for st in list(c.table.values())[:-1])
    reserve = c.plan.seconds["report"] + G.ARCHIVE_S + 10  # + the session's start and machine facts
    assert sum(c.plan.seconds[n] for n in decisive) + reserve <= 9 * 60
    for name in decisive[3:]:  # (b), (c): ResNet18, 3 interleaved runs, 50,000/10,000, batch 128's preset, 2 epochs
        [cmd] = c.table[name].commands(c)
        value = {flag: cmd[cmd.index(flag) + 1] for flag in ("--models", "--repeats", "--epochs", "--data",
                                                             "--inference-paths", "--latency-batch-sizes")}
        assert value == {"--models": "resnet18", "--repeats": "3", "--epochs": "2", "--data": str(c.synthetic),
                         "--inference-paths": "eager,cuda-graph", "--latency-batch-sizes": "1,8,32,128"}, cmd
    assert c.synthetic.name == "synthetic-50000-10000-0"
    [sweep] = c.table["sweep"].commands(c)
    assert sweep[sweep.index("--batch-sizes") + 1] == "8,16,32,64,128" and "--resume" in sweep
    [check] = c.table["correctness"].commands(c)
    assert "--device" in check and check[check.index("--device") + 1] == "cuda"
    for st in c.table.values():
        cmds = st.commands(c)
        assert isinstance(cmds, str) or all(cmd[:2] != [PY, "-c"] for cmd in cmds), f"a program in a string: {cmds}"


def test_compiled_stages_time_packages_their_aoti_stage_built(tmp_path):
    """(e): per configuration of (b) and (c), one `suite.experiments.aoti package` with the compiled latency batch
    sizes, and a stage that needs it and passes the same sizes, so that the run finds its --aoti-dir built."""
    c = ctx("--out", str(tmp_path / "s"))
    for mode in G.GPU.modes[:2]:
        precision, channels_last = H.mode_precision_and_layout(mode)
        packages = c.table[f"aoti-resnet18-{precision}{'-cl' if channels_last else ''}"]
        [cmd] = packages.commands(c)
        assert cmd[:4] == [PY, "-m", "suite.experiments.aoti", "package"], cmd
        value = {flag: cmd[cmd.index(flag) + 1] for flag in ("--model", "--device", "--precision", "--batch-sizes")}
        assert value == {"--model": "resnet18", "--device": "cuda", "--precision": precision,
                         "--batch-sizes": G.GPU.compiled_sizes} and ("--channels-last" in cmd) == channels_last
        timed = c.table[f"compiled-resnet18-{mode}"]
        [cmd] = timed.commands(c)
        assert packages.name in timed.needs and cmd[cmd.index("--latency-batch-sizes") + 1] == G.GPU.compiled_sizes
        assert cmd[cmd.index("--inference-paths") + 1] == "compile,aoti"
    assert list(c.table).index("aoti-resnet18-fp32") > list(c.table).index("sweep")  # (e), after (a)-(d)


def test_ddp_overhead_stages_run_each_model_as_one_rank_jobs_last(tmp_path):
    """(e)'s lowest priority, just before the report: per model, both languages' test_dist_step only, as 1-rank
    torchrun jobs (--world-sizes 1) on the matrix's data and repeats, each sized."""
    c = ctx("--out", str(tmp_path / "s"))
    names = list(c.table)
    ddp = [f"ddp-overhead-{m}" for m in G.GPU.models]
    assert names[-1 - len(ddp):-1] == ddp
    for model, name in zip(G.GPU.models, ddp):
        [cmd] = c.table[name].commands(c)
        value = {flag: cmd[cmd.index(flag) + 1] for flag in ("-k", "--world-sizes", "--models", "--repeats", "--data")}
        assert value == {"-k": "test_dist_step", "--world-sizes": "1", "--models": model, "--repeats": "3",
                         "--data": str(c.synthetic)}, cmd
        assert set(c.table[name].needs) == {"build", "data-synthetic"} and G.GPU.seconds[name] > 0


def test_correctness_runs_the_named_cuda_proofs_only(tmp_path):
    """The stage's selection, collected: every test of test_traces.py and the CUDA tests of the others (lockstep,
    peak memory, cross-loaded weights, C++'s pinned loader), none of their CPU ones."""
    c = ctx("--dry-run", "--out", str(tmp_path / "s"))
    [cmd] = c.table["correctness"].commands(c)
    proc = subprocess.run(cmd, cwd=H.ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    others = [i for i in ids if not i.startswith("tests/test_traces.py::")]
    assert len(ids) - len(others) > 20 and all("cuda" in i for i in others), ids
    for proof in ("test_lockstep_training_cuda", "test_training_peak_memory_excludes_the_warmup_cuda",
                  "test_weights_cross_load_same_logits[python-cuda]", "test_weights_cross_load_same_logits[cpp-cuda]",
                  "test_idiomatic_trains_on_augmented_batches[cpp-cuda]"):
        assert any(proof in i for i in others), (proof, others)


def test_no_gpu_stops_the_session_in_one_line(tmp_path, monkeypatch, capsys):
    """The GPU plan on a machine where torch sees no GPU: one line, before anything runs or is written."""
    monkeypatch.setattr(G, "machine_facts", lambda: {"gpu_count": 0, "gpu": "none (CPU)"})
    with pytest.raises(SystemExit) as stopped:
        G.main(["--out", str(tmp_path / "out")])
    assert stopped.value.code == 2
    [line] = [x for x in capsys.readouterr().err.splitlines() if "error:" in x]
    assert "torch sees no GPU" in line and "--dry-run" in line
    assert not (tmp_path / "out").exists()


def test_a_missing_python_module_stops_the_session_in_one_line(tmp_path, monkeypatch, capsys):
    """A machine without jsonschema's wheels (or one of its dependencies): the session says so before any stage,
    also where the module is found but does not import."""
    assert G.missing_modules() == [], "this interpreter has every module the suite needs"
    broken = tmp_path / "site" / "brokenmod"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("import rpds_missing_dependency\n")
    monkeypatch.syspath_prepend(str(broken.parent))
    [found] = G.missing_modules(("json", "brokenmod"))
    assert found.startswith("brokenmod (") and "rpds_missing_dependency" in found
    monkeypatch.setattr(G, "missing_modules", lambda: ["jsonschema (No module named 'rpds')"])
    with pytest.raises(SystemExit) as stopped:
        G.main(["--out", str(tmp_path / "out"), "--dry-run"])
    assert stopped.value.code == 2
    [line] = [x for x in capsys.readouterr().err.splitlines() if "error:" in x]
    assert "jsonschema (No module named 'rpds')" in line and "docs/gpu.md" in line
    assert not (tmp_path / "out").exists(), "nothing may run or be written"


def test_machine_facts_are_read_past_what_imports_print():
    assert G.last_json('a warning from an import\n{\n "gpu_count": 1,\n "x": {"y": 2}\n}\n') == \
        {"gpu_count": 1, "x": {"y": 2}}


# ---- the command ----------------------------------------------------------------------------------------------

def main_in_process(capsys, *args):
    """(exit code, stdout, stderr) of suite.experiments.gpu_session's main in this process: the session's own
    imports are paid once (its stages still run in processes of their own); SIGTERM's handler is put back."""
    handler = signal.getsignal(signal.SIGTERM)
    try:
        code = G.main(list(args))
    except SystemExit as err:
        code = err.code
    finally:
        signal.signal(signal.SIGTERM, handler)
    out = capsys.readouterr()
    return code, out.out, out.err


# Thorough, like the dry run below: each session collects machine facts in processes of its own (seconds each).
# The default tier keeps the session's plan, budget and stage logic on constructed stages (above).
@pytest.mark.thorough
def test_failures_are_recorded_block_dependents_and_set_the_exit_code(tmp_path, env, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_CACHE", env["BENCH_CACHE"])
    args = ["--dry-run", "--out", str(tmp_path / "s"), "--real-subset", str(tmp_path / "missing")]
    code, out, _ = main_in_process(capsys, *args, "--stages", "data-real-subset")
    assert code == 1
    assert re.search(rf"^{G.PROG}: finished data-real-subset: failed, exit 1, \d+\.\ds", out, re.M)
    assert json.loads((tmp_path / "s" / "stages" / "data-real-subset.json").read_text())["status"] == "failed"
    assert "data folder not found" in out  # the log's tail is shown
    code, out, _ = main_in_process(capsys, *args, "--stages", "accuracy-real-resnet18")
    assert code == 1
    assert re.search(r"NOT RUN accuracy-real-resnet18: needs .*data-real-subset", out), out
    assert not (tmp_path / "s" / "stages" / "accuracy-real-resnet18.json").exists()
    code, _, err = main_in_process(capsys, *args, "--stages", "nope")
    assert code == 2 and "unknown stage(s) nope" in err


@pytest.mark.thorough  # a session of its own, cut off by SIGTERM
def test_a_stage_cut_off_leaves_no_marker(tmp_path, env):
    out = tmp_path / "s"
    proc = subprocess.Popen([PY, "-m", "suite.experiments.gpu_session", "--dry-run", "--out", str(out),
                             "--stages", "data-synthetic"], cwd=H.ROOT, env=env, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if "started data-synthetic" in line:
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.stdout.read()
    assert proc.wait(timeout=60) == 143, rest
    assert "interrupted during data-synthetic" in rest
    assert not (out / "stages" / "data-synthetic.json").exists()


@pytest.mark.cpp
@pytest.mark.thorough  # minutes on 2 cores: every stage's pytest sessions and trainers, tiny
def test_dry_run_keeps_its_budget_resumes_and_redoes(tmp_path, cpp_exe, env):
    out, archive = tmp_path / "session", tmp_path / "session.tar.gz"
    args = ["--dry-run", "--out", str(out), "--build-dir", str(cpp_exe.parent)]
    c = ctx(*args)
    names = list(c.table)

    # A budget that holds (a) and the report, not everything: the run ends within it and leaves the rest.
    budget = sum(G.DRY.seconds[n] for n in ("build", "correctness", "data-synthetic", "report")) + G.ARCHIVE_S + 20
    t0 = time.perf_counter()
    first = session(*args, "--budget", str(budget), env=env)
    took = time.perf_counter() - t0
    print(first.stdout)  # the summary's seconds beside the estimates (pytest -rP shows them)
    assert first.returncode == 3, first.stdout + first.stderr
    assert took < budget + 15, f"{took:.0f}s for a budget of {budget}s"  # + the interpreter's start before the clock
    for name in ("build", "correctness", "data-synthetic"):
        assert re.search(rf"^{G.PROG}: finished {name}: ok, exit 0", first.stdout, re.M), first.stdout
    for name in names:  # every stage ran, was stopped at the budget, or was left with its estimate above what was left
        left = re.search(rf"NOT STARTED {name}: its estimate (\d+)s is more than the (\d+)s left", first.stdout)
        assert left or re.search(rf"finished {name}: ok|WAITING {name}|STOPPED {name} ", first.stdout), \
            (name, first.stdout)
        assert not left or int(left[1]) > int(left[2])
    assert "left for the next run" in first.stdout

    # The same command without a budget goes on where the first stopped and runs the rest.
    rest = session(*args, "--archive", str(archive), env=env)
    print(rest.stdout)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert re.search(rf"^{G.PROG}: skipped build: already finished \(ok", rest.stdout, re.M), rest.stdout
    suite_stages = [n for n in names if n.startswith(("matrix-", "accuracy-real-", "traces-"))]
    assert {n.split("-")[0] for n in suite_stages} == {"matrix", "accuracy", "traces"}
    for name in names:
        marker = json.loads((out / "stages" / f"{name}.json").read_text())
        assert marker["status"] == "ok" and marker["exit_code"] == 0 and marker["seconds"] >= 0, marker
        assert marker["commands"] and (out / "logs" / f"{name}.log").is_file()
    for name in suite_stages:  # each stage's results in its own folder, both languages, valid documents
        for lang in LANGUAGES:
            mode = name.split("-", 2)[2] if name.startswith("matrix-") else "default"
            doc = load_results(out / "results" / name / f"{lang}-resnet18-{mode}-r1.json")
            assert doc["device"]["type"] == "cpu"
        saved = list((out / "benchmarks").glob(f"*/[0-9][0-9][0-9][0-9]_{name}.json"))
        assert len(saved) == 1, saved
        bench = json.loads(saved[0].read_text())
        assert bench["benchmarks"] and "torch_api_bench" in bench["machine_info"]
    merged = json.loads((out / "baseline.json").read_text())["benchmarks"]
    assert merged and len({b["fullname"] for b in merged}) == len(merged)  # a baseline names each test once
    assert {b["extra_info"]["suite_config"]["preset"] for b in merged}  # the matrix's saves, with their config
    swept = json.loads((out / "sweep" / "sweep.json").read_text())
    assert swept["complete"] and swept["startup"]
    report = (out / "report" / "report.md").read_text()
    assert "Python / C++" in report and "crossover" in report.lower()
    assert (out / "correctness.xml").is_file()
    facts = json.loads((out / "session.json").read_text())
    assert facts["dry_run"] and facts["machine"]["torch"] and "cpu_threads" in facts["machine"]
    assert [s["name"] for s in facts["stages"]] == names and all(s["status"] == "ok" for s in facts["stages"])
    assert "report.md" in {os.path.basename(n) for n in tarfile.open(archive).getnames()}

    # The same command again: every stage is already done, nothing runs, not even the report.
    markers = {p: p.stat().st_mtime_ns for p in (out / "stages").glob("*.json")}
    again = session(*args, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "started" not in again.stdout
    for name in names:
        assert re.search(rf"^{G.PROG}: skipped {name}: already finished \(ok", again.stdout, re.M), again.stdout
    assert markers == {p: p.stat().st_mtime_ns for p in (out / "stages").glob("*.json")}

    # One stage redone on demand.
    before = (out / "report" / "report.md").stat().st_mtime_ns
    redo = session(*args, "--stages", "report", "--force", env=env)
    assert redo.returncode == 0, redo.stdout + redo.stderr
    assert re.search(rf"^{G.PROG}: finished report: ok, exit 0, \d+\.\ds", redo.stdout, re.M)
    assert redo.stdout.count(" started ") == 1 and "skipped" not in redo.stdout
    assert (out / "report" / "report.md").stat().st_mtime_ns > before
