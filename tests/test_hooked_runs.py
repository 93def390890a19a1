"""A run with a trainer test hook set is no measurement, and nothing lets it pass for one: both trainers know the same
hooks and the schema records them (test_hooks), the gate's lines and the report name such runs. (That the trainers
record the hooks they ran with: tests/test_parity.py and tests/test_bad_input.py.)"""

import json
import re

from bench.results import TEST_HOOKS
from suite import gate
from suite.harness import ROOT
from suite.report import build_report
from suite.schema import results_schema

CONFIG = {"preset": "smoke", "batch_size": 32, "epochs": 3}
EPOCH = "test_epoch_time[resnet18-python-default]"
LIMITS = {"groups": {g: 0.03 for g in gate.GROUPS.values()}, "alpha": 0.01, "min_runs": 3}
REAL = ROOT / "docs" / "results" / "warmup-cpu" / "python-resnet18-warmup3.json"


def run_doc(level, hooks=None):
    """A pytest-benchmark run of EPOCH: 5 runs of 3 epochs around `level` seconds, with these test hooks."""
    runs = [[level * (1 + 0.001 * i)] * 3 for i in range(5)]
    extra = {"sample_runs": [i for i, r in enumerate(runs, 1) for _ in r], "suite_config": CONFIG}
    if hooks is not None:
        extra["test_hooks"] = hooks
    return {"machine_info": {"torch_api_bench": {}}, "commit_info": {},
            "benchmarks": [{"name": EPOCH, "fullname": f"tests/test_benchmarks.py::{EPOCH}",
                            "stats": {"data": [s for r in runs for s in r]}, "extra_info": extra}]}


def test_both_trainers_and_the_schema_know_the_same_hooks():
    declared = re.search(r"kTestHooks\[\] = \{([^}]*)\}", (ROOT / "cpp" / "results.h").read_text())[1]
    assert tuple(re.findall(r'"(\w+)"', declared)) == TEST_HOOKS
    assert tuple(results_schema()["properties"]["test_hooks"]["properties"]) == TEST_HOOKS


def test_the_gate_marks_every_line_of_a_hooked_side(tmp_path):
    hooked = {"BENCH_ADD_MS_PER_STEP": 40.0}
    for now, base in [(run_doc(1.5, hooked), run_doc(1.0, {})), (run_doc(1.0), run_doc(1.0, hooked))]:
        regressions, [line] = gate.compare(now, base, LIMITS)
        assert f"[epoch_time] ({gate.HOOKED}: BENCH_ADD_MS_PER_STEP=40.0):" in line, line
    _, [line] = gate.compare(run_doc(1.5, {}), run_doc(1.0), LIMITS)  # none set, or stored before schema 6
    assert gate.HOOKED not in line and line.startswith("REGRESSION")
    out = []
    assert gate.run_gate(run_doc(1.5, hooked), baseline=run_doc(1.0), baseline_path="b.json", write=out.append) == 1
    assert out[-1].endswith(f"({gate.HOOKED}: runs with trainer test hooks set)"), out[-1]


def test_the_report_names_the_hooked_runs(tmp_path):
    doc = json.loads(REAL.read_text())
    paths = []
    for name, hooks in (("measured.json", {}), ("hooked.json", {"BENCH_SLEEP_PER_STEP_MS": 400.0})):
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps({**doc, "test_hooks": hooks}))
    text = build_report(paths, tmp_path / "report").read_text()
    [note] = [line for line in text.splitlines() if "HOOKED: not a measurement" in line]
    assert "1 of 2 runs" in note and "`hooked.json` (BENCH_SLEEP_PER_STEP_MS=400.0)" in note
    assert "measured.json" not in note
    text = build_report(paths[:1], tmp_path / "measured").read_text()
    assert "HOOKED" not in text
