"""suite.gpu_session, the one GPU-session command, through its --dry-run: the same stages, markers, resume,
results, benchmark storage and report as on a GPU, tiny and on the CPU."""

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from bench.vocab import LANGUAGES
from suite import gpu_session as G
from suite import harness as H
from suite.schema import load_results

pytestmark = pytest.mark.cpp


def session(*args, env=None):
    return subprocess.run([sys.executable, "-m", "suite.gpu_session", *args], cwd=H.ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def stage_names(*args):
    parsed, _ = G.parse_args(list(args))
    return [st.name for st in G.stages(G.Ctx(parsed))]


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "BENCH_CACHE": str(tmp_path / "cache")}  # the tiny set is this test's own


@pytest.mark.thorough  # about 3 minutes on 2 cores: every stage's pytest sessions and trainers, tiny
def test_dry_run_runs_every_stage_resumes_and_redoes(tmp_path, cpp_exe, env):
    out, archive = tmp_path / "session", tmp_path / "session.tar.gz"
    args = ["--dry-run", "--out", str(out), "--build-dir", str(cpp_exe.parent)]
    first = session(*args, "--archive", str(archive), env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    names = stage_names(*args)
    suite_stages = [n for n in names if n.startswith(("matrix-", "batch-", "accuracy-real-"))]
    assert names[:4] == ["build", "correctness", "data-synthetic", "data-real-subset"] and names[-1] == "report"
    assert {n.split("-")[0] for n in suite_stages} == {"matrix", "batch", "accuracy"}
    for name in names:
        assert re.search(rf"^{G.PROG}: finished {name}: ok, exit 0, \d+\.\ds$", first.stdout, re.M), first.stdout
        marker = json.loads((out / "stages" / f"{name}.json").read_text())
        assert marker["status"] == "ok" and marker["exit_code"] == 0 and marker["seconds"] >= 0
        assert marker["commands"] and (out / "logs" / f"{name}.log").is_file()
    for name in suite_stages:  # each stage's results in its own folder, both languages, valid documents
        for lang in LANGUAGES:
            doc = load_results(out / "results" / name / f"{lang}-resnet18-default-r1.json")
            assert doc["device"]["type"] == "cpu"
        saved = list((out / "benchmarks").glob(f"*/[0-9][0-9][0-9][0-9]_{name}.json"))
        assert len(saved) == 1, saved
        bench = json.loads(saved[0].read_text())
        assert bench["benchmarks"] and "torch_api_bench" in bench["machine_info"]
        assert (out / "benchmark-json" / f"{name}.json").is_file()
    merged = json.loads((out / "baseline.json").read_text())["benchmarks"]
    assert merged and len({b["fullname"] for b in merged}) == len(merged)  # a baseline names each test once
    assert "Python / C++" in (out / "report" / "report.md").read_text()
    assert (out / "correctness.xml").is_file()
    facts = json.loads((out / "session.json").read_text())
    assert facts["dry_run"] and facts["machine"]["torch"] and "cpu_count" in facts["machine"]
    assert [s["name"] for s in facts["stages"]] == names and all(s["status"] == "ok" for s in facts["stages"])
    assert "report.md" in {os.path.basename(n) for n in tarfile.open(archive).getnames()}

    # The same command again: every stage is already done, nothing runs.
    markers = {p: p.stat().st_mtime_ns for p in (out / "stages").glob("*.json")}
    t0 = time.perf_counter()
    again = session(*args, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert time.perf_counter() - t0 < 60, "a rerun with every stage done should only read its markers"
    assert "started" not in again.stdout
    for name in names:
        assert re.search(rf"^{G.PROG}: skipped {name}: already finished \(ok", again.stdout, re.M), again.stdout
    assert markers == {p: p.stat().st_mtime_ns for p in (out / "stages").glob("*.json")}

    # One stage redone on demand.
    before = (out / "report" / "report.md").stat().st_mtime_ns
    redo = session(*args, "--stages", "report", "--force", env=env)
    assert redo.returncode == 0, redo.stdout + redo.stderr
    assert re.search(rf"^{G.PROG}: finished report: ok, exit 0, \d+\.\ds$", redo.stdout, re.M)
    assert redo.stdout.count(" started ") == 1 and "skipped" not in redo.stdout
    assert (out / "report" / "report.md").stat().st_mtime_ns > before


def test_aoti_stages_build_one_folder_per_configuration_with_every_latency_batch_size(tmp_path):
    """The GPU plan: one `suite.aoti package` call per model and (precision, layout) of the matrix's modes, with all
    the matrix's latency batch sizes, so every matrix trainer finds its --aoti-dir built and times, not compiles."""
    parsed, _ = G.parse_args(["--out", str(tmp_path / "s")])
    c = G.Ctx(parsed)
    configs = {H.mode_precision_and_layout(mode) for mode in G.GPU.modes}
    aoti_stages = [st for st in G.stages(c) if st.name.startswith("aoti-")]
    got = set()
    for st in aoti_stages:
        [cmd] = st.commands(c)
        assert cmd[:4] == [sys.executable, "-m", "suite.aoti", "package"], cmd
        value = {flag: cmd[cmd.index(flag) + 1] for flag in ("--model", "--device", "--precision", "--batch-sizes")}
        assert (value["--device"], value["--batch-sizes"]) == ("cuda", G.GPU.latency_sizes), cmd
        got.add((value["--model"], value["--precision"], "--channels-last" in cmd))
    assert got == {(model, *config) for model in G.GPU.models for config in configs} and len(got) == len(aoti_stages)


def test_failures_are_recorded_block_dependents_and_set_the_exit_code(tmp_path, env):
    # Without --dry-run (the GPU plan) the data check runs on any machine: a missing subset fails it.
    args = ["--out", str(tmp_path / "s"), "--real-subset", str(tmp_path / "missing")]
    failed = session(*args, "--stages", "data-real-subset", env=env)
    assert failed.returncode == 1
    assert re.search(rf"^{G.PROG}: finished data-real-subset: failed, exit 1, \d+\.\ds$", failed.stdout, re.M)
    assert json.loads((tmp_path / "s" / "stages" / "data-real-subset.json").read_text())["status"] == "failed"
    assert "data folder not found" in failed.stdout  # the log's tail is shown
    blocked = session(*args, "--stages", "accuracy-real-resnet18", env=env)
    assert blocked.returncode == 1
    assert re.search(r"NOT RUN accuracy-real-resnet18: needs .*data-real-subset", blocked.stdout), blocked.stdout
    assert not (tmp_path / "s" / "stages" / "accuracy-real-resnet18.json").exists()
    unknown = session(*args, "--stages", "nope", env=env)
    assert unknown.returncode == 2 and "unknown stage(s) nope" in unknown.stderr


def test_a_stage_cut_off_leaves_no_marker(tmp_path, env):
    out = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-m", "suite.gpu_session", "--dry-run", "--out", str(out),
                             "--stages", "data-synthetic"], cwd=H.ROOT, env=env, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if "started data-synthetic" in line:
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.stdout.read()
    assert proc.wait(timeout=60) == 143, rest
    assert "interrupted during data-synthetic" in rest
    assert not (out / "stages" / "data-synthetic.json").exists()


def test_a_missing_python_module_stops_the_session_in_one_line(tmp_path, monkeypatch, capsys):
    """The device machines lack jsonschema unless its wheels travel: the session says so before any stage."""
    assert G.missing_modules() == [], "this interpreter has every module the suite needs"
    monkeypatch.setattr(G, "missing_modules", lambda: ["jsonschema"])
    with pytest.raises(SystemExit) as stopped:
        G.main(["--out", str(tmp_path / "out"), "--dry-run"])
    assert stopped.value.code == 2
    [line] = [x for x in capsys.readouterr().err.splitlines() if "error:" in x]
    assert "jsonschema not installed" in line and "GPU machines" in line
    assert not (tmp_path / "out").exists(), "nothing may run or be written"
