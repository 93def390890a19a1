"""The sweep's statistics on constructed runs, where the answer is known: the ratio's direction, the verdict over
runs, the crossover, and the section the report's renderers draw from a saved result. The sweep itself
(suite/experiments/sweep.py) is opt-in (minutes of training per batch size); the GPU session's dry run
(tests/test_gpu_session.py) runs it tiny."""

import json
import subprocess
from pathlib import Path

from suite.experiments import sweep
from suite.report import compare, markdown, plots

METRIC = "train_step_ms"


def runs(python_ms, cpp_ms, n=4):
    """n runs per language of one batch size, each a little different, at the given step times."""
    return {lang: [{METRIC: [ms * (1 + 0.01 * i)], "latency_ms": [ms]} for i in range(n)]
            for lang, ms in (("python", python_ms), ("cpp", cpp_ms))}


def test_cpp_faster_at_small_batches_only_names_the_crossover():
    """C++ 30% faster at batch 1 and 2, the same from 4 on: the crossover is 2."""
    by_bs = compare.sweep_ratios({1: runs(13.0, 10.0), 2: runs(26.0, 20.0), 4: runs(40.0, 40.0),
                                  8: runs(80.0, 80.0)})[METRIC]
    table = sweep.table(by_bs)
    assert [r["verdict"] for r in table] == ["C++ faster", "C++ faster", compare.NO_DIFFERENCE, compare.NO_DIFFERENCE]
    assert table[0]["ratio"] > 1 and table[0]["low"] > 1  # Python / C++: a longer Python step
    assert compare.crossover(by_bs) == 2


def test_no_crossover_when_the_smallest_batch_shows_no_difference():
    assert compare.crossover(compare.sweep_ratios({1: runs(10.0, 10.0), 2: runs(26.0, 20.0)})[METRIC]) is None


def test_too_few_runs_for_a_verdict():
    """3 runs a side: the comparison falls back to samples (one per run here: 3 against 3), marked by its unit, and
    names no faster language although C++ is 30% faster in every run; a language without runs gives n/a."""
    by_bs = compare.sweep_ratios({1: runs(13.0, 10.0, n=3), 2: {"python": [], "cpp": runs(1.0, 1.0)["cpp"]}})[METRIC]
    table = sweep.table(by_bs)
    assert table[0]["unit"] == "samples of one run" and table[0]["low"] > 1
    assert table[0]["verdict"] == "3 runs per language: no verdict; --repeats 4 or more"
    assert table[1]["verdict"] == "n/a: a language has no run"
    assert compare.crossover(by_bs) is None


def test_section_and_plot_from_the_saved_result(tmp_path):
    result = json.loads(json.dumps({
        "args": {"model": "resnet18", "device": "cpu", "repeats": 4, "steps": 4, "latency_iters": 20},
        "runs": {1: runs(13.0, 10.0), 2: runs(20.0, 20.0)},
        "startup": {"python": {"to_first_step_s": sweep.summary([2.5, 2.4, 2.6, None]),
                               "to_first_inference_s": sweep.summary([None]), "peak_rss_mib": None},
                    "cpp": {"to_first_step_s": None, "to_first_inference_s": None, "peak_rss_mib": None}},
        "failures": ["batch 256 repeat 1: cpp exit 1: out of memory"]}))
    text = markdown.sweep_md(result, "sweep.json")
    assert "C++ is measurably faster at every batch size up to 1." in text
    assert "| python | 2.50 (2.40–2.60) | n/a | n/a |" in text and "Runs that failed: batch 256" in text
    plots.plot_crossover(compare.sweep_ratios(result["runs"]), tmp_path / "crossover.png")
    assert (tmp_path / "crossover.png").stat().st_size > 1000


def test_resume_reuses_the_runs_a_cut_off_sweep_left(tmp_path, monkeypatch):
    """--resume: a run whose results file is there and valid is not run again; one whose file does not validate
    (cut off while writing) is. Without --resume every run runs."""
    started = []

    def run_trainer(lang, argv, exe):
        started.append(argv[argv.index("--results") + 1])
        return subprocess.CompletedProcess(argv, 0, "", "")

    def load_results(path):  # stands in for the schema: an empty document does not validate
        doc = json.loads(Path(path).read_text())
        if not doc:
            raise sweep.ResultsError(f"{path}: empty")
        return doc
    monkeypatch.setattr(sweep.H, "run_trainer", run_trainer)
    monkeypatch.setattr(sweep, "load_results", load_results)
    kept, broken = tmp_path / "kept.json", tmp_path / "broken.json"
    kept.write_text('{"run": "earlier"}')
    broken.write_text("{}")
    assert sweep.run("python", ["--results", str(kept)], None, resume=True) == {"run": "earlier"}
    assert started == []
    sweep.run("python", ["--results", str(broken)], None, resume=True)
    sweep.run("python", ["--results", str(kept)], None)
    assert started == [str(broken), str(kept)]
