"""suite/sweep.py's statistics on constructed runs, where the answer is known: the ratio's direction, the verdict
over runs, the crossover, and the Markdown and plot the report includes. The sweep itself is opt-in (minutes of
training per batch size); the GPU session's dry run (tests/test_gpu_session.py) runs it tiny."""

import json

from suite import sweep

METRIC = "train_step_ms"


def runs(python_ms, cpp_ms, n=4):
    """n runs per language of one batch size, each a little different, at the given step times."""
    return {lang: [{METRIC: [ms * (1 + 0.01 * i)], "latency_ms": [ms]} for i in range(n)]
            for lang, ms in (("python", python_ms), ("cpp", cpp_ms))}


def test_cpp_faster_at_small_batches_only_names_the_crossover():
    """C++ 30% faster at batch 1 and 2, the same from 4 on: the crossover is 2."""
    table = sweep.compare({1: runs(13.0, 10.0), 2: runs(26.0, 20.0), 4: runs(40.0, 40.0), 8: runs(80.0, 80.0)},
                          METRIC)
    assert [r["verdict"] for r in table] == ["C++ faster", "C++ faster", "no difference shown", "no difference shown"]
    assert table[0]["ratio"] > 1 and table[0]["low"] > 1  # Python / C++: a longer Python step
    assert sweep.crossover(table) == 2


def test_no_crossover_when_the_smallest_batch_shows_no_difference():
    table = sweep.compare({1: runs(10.0, 10.0), 2: runs(26.0, 20.0)}, METRIC)
    assert sweep.crossover(table) is None


def test_too_few_runs_for_a_verdict_over_runs():
    """3 runs a side: the comparison falls back to samples (one per run here: 3 against 3), marked by its unit;
    a language without runs gives n/a, not a verdict."""
    table = sweep.compare({1: runs(13.0, 10.0, n=3), 2: {"python": [], "cpp": runs(1.0, 1.0)["cpp"]}}, METRIC)
    assert table[0]["unit"] == "samples of one run"
    assert table[1]["verdict"] == "n/a: a language has no run"


def test_markdown_and_plot_from_the_saved_result(tmp_path):
    tables = {m: sweep.compare({1: runs(13.0, 10.0), 2: runs(20.0, 20.0)}, m) for m in sweep.METRICS}
    result = json.loads(json.dumps({
        "args": {"model": "resnet18", "device": "cpu", "repeats": 4, "steps": 4, "latency_iters": 20},
        "tables": tables, "crossover": {m: sweep.crossover(t) for m, t in tables.items()},
        "startup": {"python": {"to_first_step_s": {"median": 2.5, "min": 2.4, "max": 2.6, "n": 4},
                               "to_first_inference_s": None, "peak_rss_mib": None},
                    "cpp": {"to_first_step_s": None, "to_first_inference_s": None, "peak_rss_mib": None}},
        "failures": ["batch 256 repeat 1: cpp exit 1: out of memory"]}))
    text = "\n".join(sweep.markdown(result))
    assert "C++ is measurably faster at every batch size up to 1" in text
    assert "| python | 2.50 (2.40–2.60) | n/a | n/a |" in text and "Runs that failed: batch 256" in text
    sweep.plot(result["tables"], tmp_path / "crossover.png")
    assert (tmp_path / "crossover.png").stat().st_size > 1000
