"""A run with a trainer test hook set is no measurement, and nothing lets it pass for one: the results' process
section records the hooks that were set (`process.test_hooks`), the gate's lines and the report mark such runs.
(That both trainers record the hooks they ran with: tests/test_parity.py's clock test, tests/test_process.py.)"""

import json

from bench.vocab import LANGUAGES
from suite import gate
from suite.metrics import hooks_set_in
from suite.report.cli import build_report

CONFIG = {"preset": "smoke", "batch_size": 32, "epochs": 3}
EPOCH = "test_epoch_time[resnet18-python-default]"
LIMITS = {"groups": {g: 0.03 for g in gate.GROUPS.values()}, "alpha": 0.01, "min_runs_to_judge": 3}


def run_doc(level, hooks=None):
    """A pytest-benchmark run of EPOCH: 5 runs of 3 epochs around `level` seconds, with these test hooks."""
    runs = [[level * (1 + 0.001 * i)] * 3 for i in range(5)]
    extra = {"sample_runs": [i for i, r in enumerate(runs, 1) for _ in r], "suite_config": CONFIG}
    if hooks is not None:
        extra["test_hooks"] = hooks
    return {"machine_info": {"torch_api_bench": {}}, "commit_info": {},
            "benchmarks": [{"name": EPOCH, "fullname": f"tests/test_benchmarks.py::{EPOCH}",
                            "stats": {"data": [s for r in runs for s in r]}, "extra_info": extra}]}


def test_the_gate_marks_every_line_of_a_hooked_side():
    hooked = {"BENCH_ADD_MS_PER_STEP": "40"}
    for now, base in [(run_doc(1.5, hooked), run_doc(1.0, {})), (run_doc(1.0), run_doc(1.0, hooked))]:
        regressions, [line] = gate.compare(now, base, LIMITS)
        assert f"[epoch_time] ({gate.HOOKED}: BENCH_ADD_MS_PER_STEP=40):" in line, line
    _, [line] = gate.compare(run_doc(1.5, {}), run_doc(1.0), LIMITS)  # none set, or stored before schema 6
    assert gate.HOOKED not in line and line.startswith("REGRESSION")
    out = []
    assert gate.run_gate(run_doc(1.5, hooked), baseline=run_doc(1.0), baseline_path="b.json", write=out.append) == 1
    assert out[-1].endswith(f"({gate.HOOKED}: runs with trainer test hooks set)"), out[-1]


def test_the_hooks_of_runs_are_read_from_their_process_sections():
    docs = [{"process": {"test_hooks": {"BENCH_PLANT": "gc"}}}, {"process": {"test_hooks": {}}}, {}]
    assert hooks_set_in(docs) == {"BENCH_PLANT": "gc"} and hooks_set_in(docs[1:]) == {}


def test_the_report_names_the_hooked_runs(tiny_run, tmp_path):
    """The canonical run and the same document as if a hook had been set: the report says HOOKED; the canonical run
    alone, not."""
    doc = tiny_run(LANGUAGES[0]).doc
    hooked = json.loads(json.dumps(doc))
    hooked["process"]["test_hooks"] = {"BENCH_SLEEP_PER_STEP_MS": "400"}
    paths = []
    for name, document in (("measured.json", doc), ("hooked.json", hooked)):
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps(document))
    text = build_report(paths, tmp_path / "report").read_text()
    assert text.count("**HOOKED: not a measurement.**") == 1 and "BENCH_SLEEP_PER_STEP_MS=400" in text
    assert "HOOKED" not in build_report(paths[:1], tmp_path / "measured").read_text()
