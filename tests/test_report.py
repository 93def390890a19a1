"""suite.report: the data model (RunSamples), table numbers against the documents, aggregation, separation,
honest verdicts, the template, errors, plots.

Fast: no training. Each document is a committed real results file (schema/results.schema.json, version 3) with
the epoch times, latency samples, config and (schema 4's) start-up a test needs, validated and written to tmp_path.
"""

import copy
import csv
import json
import statistics

import numpy as np
import pytest

from bench.results import summarize_ms
from suite import metrics, stats
from suite.harness import ROOT
from suite.report import build_report, cli, compare, markdown, sections
from suite.report.samples import RunSamples
from suite.schema import validate_results

# Real 3-epoch ResNet18 runs of both languages, without latency or concurrency: each test adds what it measures.
REAL = ROOT / "docs" / "results" / "warmup-cpu"


def make_doc(language="python", model="resnet18", train_seconds=(2.0, 1.0, 1.5), latency=None, concurrency=None,
             startup_seconds=None, **config):
    """A real results document with the given epoch times, eager latency samples ({bs: [ms]} or
    {(path, bs): [ms]}), concurrency ({threads: (seconds, [ms per request])}), start-up and config values."""
    doc = json.loads((REAL / f"{language}-resnet18-warmup3.json").read_text())
    if startup_seconds is not None:
        doc["startup_seconds"] = startup_seconds
    latency = latency or {1: [3.0, 1.0, 2.0, 4.0], 32: [20.0, 22.0, 21.0]}
    latency = {(k if isinstance(k, tuple) else ("eager", k)): v for k, v in latency.items()}
    concurrency = concurrency or {}
    real_epochs, n_train = doc["epochs"], doc["dataset"]["train_records"]
    doc["epochs"] = [{**real_epochs[i % len(real_epochs)], "epoch": i + 1, "train_seconds": t,
                      "images_per_second": n_train / t} for i, t in enumerate(train_seconds)]
    doc["total_seconds"] = sum(train_seconds) + 0.5
    doc["final"] = {k: doc["epochs"][-1][k] for k in doc["final"]}
    doc["model"] = model
    doc["config"].update(model=model, epochs=len(train_seconds),
                         latency_batch_sizes=sorted({bs for _, bs in latency}),
                         inference_paths=list(dict.fromkeys(p for p, _ in sorted(latency))),
                         concurrency=sorted(concurrency), **config)
    doc["precision_label"] = doc["config"]["precision"]
    doc["latency"] = [{"path": path, "batch_size": bs, "samples_ms": s, **summarize_ms(s), "peak_memory_bytes": None}
                      for (path, bs), s in sorted(latency.items())]
    doc["concurrency"] = [{"threads": n, "requests": len(s), "seconds": sec, "images_per_second": len(s) / sec,
                           "samples_ms": s, **summarize_ms(s)} for n, (sec, s) in sorted(concurrency.items())]
    return validate_results(doc)


def repeats(language, runs, **kwargs):
    """One document per entry of `runs` (its epoch times), numbered as the suite's --repeats numbers them."""
    return [make_doc(language, train_seconds=times, repeat=i, **kwargs) for i, times in enumerate(runs, 1)]


def ratio_row(py_docs, cpp_docs, metric):
    """The Ratio of one quantity between the languages' documents."""
    return compare.ratio_rows(py_docs, cpp_docs)[metric]


def write_docs(tmp_path, docs):
    paths = []
    for i, doc in enumerate(docs):
        path = tmp_path / f"run{i}-{doc['language']}-{doc['model']}.json"
        path.write_text(json.dumps(doc))
        paths.append(path)
    return paths


def median(values):
    return statistics.median(values)


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_run_samples_keep_runs_apart_and_pool_for_percentiles():
    """The data model: pooled percentiles are numpy's (linear), medians per run, merge of replicates, the noise flag,
    pytest-benchmark's flat form and back, a unit change, and a run that measured nothing."""
    a = RunSamples([[1.0, 2.0, 3.0], [10.0, 11.0]], "ms")
    assert a.n_runs == 2 and a.flat() == [1.0, 2.0, 3.0, 10.0, 11.0] and a.sample_runs() == [1, 1, 1, 2, 2]
    assert a.median == 3.0 and a.percentile(90) == pytest.approx(np.percentile(a.flat(), 90)) == 10.6
    assert list(a.run_medians) == [2.0, 10.5] and a.median_of_runs == 6.25
    assert a.noisy and a.iqr_over_median == pytest.approx(8.0 / 3.0)  # IQR 2..10 over median 3
    assert not RunSamples([[1.0, 1.01, 1.02, 1.03]], "s").noisy
    merged = a.merge(RunSamples([[5.0]], "ms"))
    assert merged.runs == ((1.0, 2.0, 3.0), (10.0, 11.0), (5.0,)) and merged.summary()["n"] == 6
    with pytest.raises(ValueError):
        a.merge(RunSamples([[5.0]], "s"))
    assert RunSamples.from_flat(a.flat(), a.sample_runs(), "ms") == a
    assert a.to("s").runs[1] == pytest.approx((0.010, 0.011)) and a.to("s").unit == "s"
    partial = RunSamples.one_per_run([2.0, None], "s")
    assert partial.n_runs == 1 and not partial.complete and partial.summary()["median"] == 2.0
    assert RunSamples.one_per_run([None], "s").summary() is None and not RunSamples([], "s")


def test_metrics_of_the_report_and_the_gate_are_the_same_samples():
    """suite/metrics.py is the one definition: the report's latency in ms is what the gate stores in seconds, and
    the steady-state epochs are epochs 2 and later of each run, kept apart by run."""
    docs = repeats("python", [(3.0, 1.0, 1.2), (3.5, 1.1, 1.3)], latency={1: [2.0, 4.0]})
    gate_latency = metrics.METRICS["test_latency"].samples(docs, {"latency_path": "eager", "latency_bs": 1})
    assert gate_latency.unit == "s" and gate_latency.runs == ((0.002, 0.004), (0.002, 0.004))
    assert metrics.latency_ms(docs, "eager", 1).runs == ((2.0, 4.0), (2.0, 4.0))
    epochs = metrics.METRICS["test_epoch_time"].samples(docs, {})
    assert epochs.runs == ((1.0, 1.2), (1.1, 1.3)) and epochs == metrics.steady_epoch_seconds(docs)
    assert not metrics.latency_ms(docs, "aoti", 1).complete  # a point the runs did not measure


def test_tables_match_the_documents(tmp_path):
    py = make_doc("python", train_seconds=(2.0, 1.0, 1.5))
    cpp = make_doc("cpp", train_seconds=(1.0, 0.8, 0.9), latency={1: [1.5, 1.0, 2.5], 32: [10.0, 11.0]})
    md = build_report(write_docs(tmp_path, [py, cpp]), tmp_path / "out")
    rows = {r["language"]: r for r in read_csv(tmp_path / "out" / "results_table.csv")}
    for lang, doc in (("python", py), ("cpp", cpp)):
        row = rows[lang]
        steady = doc["epochs"][1:]  # epoch 1 is a row of its own
        assert float(row["epoch_seconds"]) == pytest.approx(median([e["train_seconds"] for e in steady]))
        assert float(row["latency_bs1"]) == pytest.approx(doc["latency"][0]["median_ms"])
        assert float(row["total_seconds"]) == pytest.approx(doc["total_seconds"])
        assert float(row["test_accuracy"]) == pytest.approx(doc["final"]["test_accuracy"])
        assert float(row["train_loss"]) == pytest.approx(doc["final"]["train_loss"])
        assert float(row["images_per_second"]) == pytest.approx(median([e["images_per_second"] for e in steady]))
    ratios = {r["metric"]: r for r in read_csv(tmp_path / "out" / "ratios.csv")}
    assert float(ratios["time per epoch (s)"]["ratio"]) == pytest.approx(1.25 / 0.85)
    assert float(ratios["epoch 1 (s)"]["ratio"]) == pytest.approx(2.0 / 1.0)
    assert float(ratios["latency eager bs=1 (ms/batch)"]["ratio"]) == pytest.approx(2.5 / 1.5)
    assert float(ratios["latency eager bs=32 (ms/batch)"]["ratio"]) == pytest.approx(21.0 / 10.5)
    text = md.read_text()
    assert "| Python | resnet18 | default | 1 | 5.0 | 1.25 | 2.50 |" in text
    assert "no peak known (pass --peak-tflops)" in text


def test_python_slower_over_five_repeats_names_cpp_faster(tmp_path):
    """Python's steady-state epochs 1.5x C++'s in every one of 5 runs: the interval over runs excludes 1."""
    jitter = (0.0, 0.02, -0.01, 0.03, -0.02)
    py = repeats("python", [(3.0, 1.50 + d, 1.52 + d, 1.48 + d) for d in jitter])
    cpp = repeats("cpp", [(2.0, 1.00 - d, 1.02 - d, 0.98 - d) for d in jitter])
    md = build_report(write_docs(tmp_path, py + cpp), tmp_path / "out").read_text()
    ratios = {r["metric"]: r for r in read_csv(tmp_path / "out" / "ratios.csv")}
    for metric in ("time per epoch (s)", "images/s (train)"):  # a longer time and a lower rate: both C++ faster
        row = ratios[metric]
        assert (row["unit"], row["n_python"], row["n_cpp"]) == (stats.UNIT_RUNS, "5", "5")
        assert float(row["ratio_low"]) < float(row["ratio"]) < float(row["ratio_high"])
        assert row["verdict"] == "C++ faster"
    assert float(ratios["time per epoch (s)"]["ratio_low"]) > 1 > float(ratios["images/s (train)"]["ratio_high"])
    assert float(ratios["time per epoch (s)"]["ratio"]) == pytest.approx(1.50 / 1.00)
    assert float(ratios["time per epoch (s)"]["p_greater"]) < 0.05
    assert ratios["epoch 1 (s)"]["verdict"] == "C++ faster"  # 3.0 vs 2.0 in every run: one sample per run
    assert "repeat" not in sections.comparability_key(py[0]), "repeats of one configuration share a section"
    assert "## Section" not in md and "¹" not in md
    row_md = next(line for line in md.splitlines() if line.startswith("| default | time per epoch (s) |"))
    assert f"| {float(ratios['time per epoch (s)']['ratio_low']):.3f}–" in row_md and "| C++ faster |" in row_md


def test_same_distribution_gives_no_verdict():
    """The same per-run epoch times in both languages, in another order: no difference shown."""
    runs = [(2.0, t, t) for t in (1.00, 1.10, 0.90, 1.05, 0.95)]
    r = ratio_row(repeats("python", runs), repeats("cpp", runs[::-1]), "time per epoch (s)")
    assert r.comparison.unit == stats.UNIT_RUNS and r.comparison.ratio == pytest.approx(1.0)
    assert r.comparison.low < 1 < r.comparison.high
    assert r.verdict == compare.NO_DIFFERENCE == "no difference shown (CI includes 1)"


def test_noisy_cell_is_named(tmp_path):
    py = make_doc("python", train_seconds=(3.0, 1.0, 1.2, 1.4, 1.6))  # steady IQR 0.3 / median 1.3 = 23 %
    cpp = make_doc("cpp", train_seconds=(3.0, 1.0, 1.01, 1.02, 1.03))  # 1.5 %: quiet
    md = build_report(write_docs(tmp_path, [py, cpp]), tmp_path / "out").read_text()
    row_md = next(line for line in md.splitlines() if line.startswith("| default | time per epoch (s) |"))
    assert row_md.count("⚠ noisy") == 1 and "1.300 (1.060–1.540) ⚠ noisy" in row_md
    noisy = next(line for line in md.splitlines() if line.startswith("Noisy (IQR/median > 10%): "))
    assert "Python resnet18 default time per epoch (s) 23%" in noisy
    assert "C++ resnet18 default time per epoch (s)" not in noisy


def test_one_run_per_language_names_no_faster_language(tmp_path):
    """One run a side, C++'s epochs half Python's: the interval over the pooled samples excludes 1, but samples of
    one process leave run-to-run noise out, so no row names a faster language and each says why."""
    py = make_doc("python", train_seconds=(3.0, 2.0, 2.1, 2.2, 2.05), latency={1: [3.0, 3.1, 3.2, 3.3]})
    cpp = make_doc("cpp", train_seconds=(2.0, 1.0, 1.1, 1.2, 1.05), latency={1: [1.0, 1.1, 1.2, 1.3]})
    md = build_report(write_docs(tmp_path, [py, cpp]), tmp_path / "out").read_text()
    ratios = {r["metric"]: r for r in json.loads((tmp_path / "out" / "report.json").read_text())
              ["sections"][0]["ratios"]}
    epochs = ratios["time per epoch (s)"]
    assert (epochs["unit"], epochs["n_python"], epochs["n_cpp"]) == (stats.UNIT_SAMPLES, 4, 4)
    assert (epochs["runs_python"], epochs["runs_cpp"]) == (1, 1)
    assert epochs["ratio_low"] > 1 and ratios["latency eager bs=1 (ms/batch)"]["ratio_low"] > 1
    assert ratios["epoch 1 (s)"]["ratio_low"] is None  # one sample per run: no interval
    why = f"one run per language: no verdict; --repeats {stats.MIN_RUNS_FOR_RUN_INTERVAL} or more"
    assert {r["verdict"] for r in ratios.values()} == {why}
    assert "Python faster" not in md and "C++ faster" not in md
    assert f"{epochs['ratio_low']:.3f}–{epochs['ratio_high']:.3f} ¹ | {why} |" in md
    assert f"¹ Fewer than {stats.MIN_RUNS_FOR_RUN_INTERVAL} runs on a side" in md


def test_three_runs_a_side_compare_pooled_samples_and_name_no_faster_language():
    """3 runs a side: a bootstrap over 3 per-run medians would be narrower than 95%, and no Mann-Whitney over them
    can reach 0.05; so the row compares the pooled samples, marked as such, and gives no verdict."""
    py = repeats("python", [(2.0, 1.5 + d, 1.5 + d) for d in (0.0, 0.01, 0.02)])
    cpp = repeats("cpp", [(2.0, 1.0 + d, 1.0 + d) for d in (0.0, 0.01, 0.02)])
    r = ratio_row(py, cpp, "time per epoch (s)")
    assert (r.comparison.unit, r.comparison.n_a, r.comparison.n_b) == (stats.UNIT_SAMPLES, 6, 6)
    assert r.comparison.low > 1 and r.verdict == "3 runs per language: no verdict; --repeats 4 or more"
    r = ratio_row(py, cpp[:2], "time per epoch (s)")
    assert r.verdict == "3 Python / 2 C++ runs: no verdict; --repeats 4 or more"


def test_over_runs_a_verdict_needs_the_test_to_agree_with_the_interval():
    """4 runs a side that overlap (one C++ run slower than one Python run): the percentile bootstrap of the ratio
    of medians excludes 1, but the Mann-Whitney p over the runs is above 0.05: no verdict. Separate them: one."""
    py = repeats("python", [(2.0, t, t) for t in (1.10, 1.12, 1.14, 1.13)])
    cpp = repeats("cpp", [(2.0, t, t) for t in (1.00, 1.01, 1.02, 1.11)])
    r = ratio_row(py, cpp, "time per epoch (s)")
    assert r.comparison.unit == stats.UNIT_RUNS and r.comparison.low > 1
    assert r.p_two_sided > compare.VERDICT_P and r.verdict.startswith("no difference shown (Mann-Whitney")
    r = ratio_row(py, repeats("cpp", [(2.0, t, t) for t in (1.00, 1.01, 1.02, 1.03)]), "time per epoch (s)")
    assert r.p_two_sided <= compare.VERDICT_P and r.verdict == "C++ faster"


def test_one_epoch_runs_have_no_steady_state():
    """A smoke run of one epoch: no time-per-epoch row, but epoch 1 compared and shown in the results table."""
    py, cpp = make_doc("python", train_seconds=(1.0,)), make_doc("cpp", train_seconds=(5.0,))
    rows = compare.ratio_rows([py], [cpp])
    assert "time per epoch (s)" not in rows
    assert rows["epoch 1 (s)"].comparison.ratio == pytest.approx(0.2)
    assert sections.row_values([py])["epoch_seconds"].median == 1.0


def test_epoch1_and_startup_rows(tmp_path):
    py = repeats("python", [(2.0 + i / 100, 1.0, 1.0) for i in range(5)], startup_seconds=3.0)
    cpp = repeats("cpp", [(1.0 + i / 100, 1.0, 1.0) for i in range(5)], startup_seconds=0.5)
    for i, doc in enumerate(py + cpp):
        doc["startup_seconds"] += i / 100  # no two alike
    md = build_report(write_docs(tmp_path, py + cpp), tmp_path / "out").read_text()
    ratios = {r["metric"]: r for r in read_csv(tmp_path / "out" / "ratios.csv")}
    assert float(ratios["start-up (s)"]["ratio"]) == pytest.approx(3.02 / 0.57)
    assert ratios["start-up (s)"]["verdict"] == ratios["epoch 1 (s)"]["verdict"] == "C++ faster"
    assert float(ratios["epoch 1 (s)"]["ratio"]) == pytest.approx(2.02 / 1.02)
    assert "| Python | resnet18 | default | fp32 | 3.02 (3.00–3.04) |" in md  # Run facts: Start-up (s)

    old = compare.ratio_rows([make_doc("python")], [make_doc("cpp")])  # documents before schema 4
    assert "start-up (s)" not in old and "epoch 1 (s)" in old
    assert not sections.row_values([make_doc("python")])["startup_seconds"]


def test_inference_paths_and_concurrency_tables(tmp_path):
    lat = {("eager", 1): [2.0, 2.2, 2.4], ("aoti", 1): [1.0, 1.1, 1.2], ("compile", 1): [1.5, 1.6, 1.7]}
    py = make_doc("python", latency=lat, concurrency={1: (1.0, [1.0] * 50), 4: (2.0, [4.0] * 200)})
    cpp_lat = {k: v for k, v in lat.items() if k[0] != "compile"}
    cpp = make_doc("cpp", latency=cpp_lat, concurrency={1: (0.8, [0.8] * 50), 4: (0.5, [0.5] * 200)})
    cpp["unavailable"] = [{"feature": "inference path compile", "reason": "torch.compile has no C++ API"}]
    md = build_report(write_docs(tmp_path, [py, cpp]), tmp_path / "out").read_text()
    latency = read_csv(tmp_path / "out" / "latency.csv")
    assert {(r["language"], r["path"]) for r in latency} == {
        ("python", "eager"), ("python", "aoti"), ("python", "compile"), ("cpp", "eager"), ("cpp", "aoti")}
    aoti_py = next(r for r in latency if (r["language"], r["path"]) == ("python", "aoti"))
    assert float(aoti_py["median_ms"]) == pytest.approx(1.1) and int(aoti_py["samples"]) == 3
    conc = {(r["language"], int(r["threads"])): float(r["images_per_second"])
            for r in read_csv(tmp_path / "out" / "concurrency.csv")}
    assert conc == {("python", 1): 50.0, ("python", 4): 100.0, ("cpp", 1): 62.5, ("cpp", 4): 400.0}
    ratios = {r["metric"]: r for r in read_csv(tmp_path / "out" / "ratios.csv")}
    assert float(ratios["latency aoti bs=1 (ms/batch)"]["ratio"]) == pytest.approx(1.0)
    assert float(ratios["images/s, 4 threads x bs 1"]["ratio"]) == pytest.approx(0.25)
    assert "latency compile bs=1 (ms/batch)" not in ratios, "a path one language lacks has no ratio"
    assert "inference path compile: torch.compile has no C++ API" in md
    assert "| Python | resnet18 | default | aoti | 1.100 (1.198) |" in md
    assert "![Concurrent inference: images/s vs threads](concurrency.png)" in md
    assert (tmp_path / "out" / "concurrency.png").stat().st_size > 1000


def test_repeated_runs_are_aggregated(tmp_path):
    first = make_doc("python", train_seconds=(1.0, 2.0))
    second = make_doc("python", train_seconds=(3.0, 4.0), latency={1: [10.0, 11.0], 32: [30.0]})
    build_report(write_docs(tmp_path, [first, second]), tmp_path / "out")
    rows = read_csv(tmp_path / "out" / "results_table.csv")
    assert len(rows) == 1 and rows[0]["runs"] == "2"
    assert float(rows[0]["epoch_seconds"]) == pytest.approx(3.0)  # median of the pooled steady epochs 2 and 4
    assert float(rows[0]["total_seconds"]) == pytest.approx(median([3.5, 7.5]))
    assert float(rows[0]["latency_bs1"]) == pytest.approx(median([3.0, 1.0, 2.0, 4.0, 10.0, 11.0]))


def test_different_configs_are_kept_apart_with_the_reason(tmp_path):
    base = make_doc("python")
    other_lr = make_doc("python", lr=0.1)
    other_data = copy.deepcopy(base)
    other_data["dataset"]["sha256"] = "cd" * 32
    moved = copy.deepcopy(base)
    moved["dataset"]["path"] = "/elsewhere"  # a path is noise: same group as base
    md = build_report(write_docs(tmp_path, [base, other_lr, other_data, moved]), tmp_path / "out")
    text = md.read_text()
    assert text.count("## Section ") == 3
    assert "config.lr = 0.1" in text and "config.lr = 0.02" in text
    assert "dataset.sha256 = cdcdcdcdcdcd" in text
    sections = json.loads((tmp_path / "out" / "report.json").read_text())["sections"]
    assert [s["results"][0]["runs"] for s in sections] == [2, 1, 1]


def test_modes_share_a_section_side_by_side(tmp_path):
    fp32 = make_doc("python")
    bf16 = make_doc("python", precision="bf16", channels_last=True)
    md = build_report(write_docs(tmp_path, [fp32, bf16]), tmp_path / "out")
    modes = [r["mode"] for r in read_csv(tmp_path / "out" / "results_table.csv")]
    assert modes == ["default", "precision=bf16, channels_last=True"]
    assert "## Section" not in md.read_text()


def test_peak_flag_gives_the_floor(tmp_path):
    doc = make_doc("python", train_seconds=(2.0,))
    build_report(write_docs(tmp_path, [doc]), tmp_path / "out", peak_tflops=1.0)
    floor = json.loads((tmp_path / "out" / "report.json").read_text())["sections"][0]["floor"][0]
    _, training = compare.flops_per_image("resnet18")
    assert floor["flops_per_image_training"] == training > 1e9  # ResNet18 at 32x32: about 3.3 GFLOPs
    assert floor["floor_epoch_seconds"] == pytest.approx(training * doc["dataset"]["train_records"] / 1e12)
    assert floor["epoch_multiple"] == pytest.approx(2.0 / floor["floor_epoch_seconds"])


def test_known_gpu_peak():
    doc = make_doc("python")
    doc["device"] = {"type": "cuda", "name": "NVIDIA H100 80GB HBM3", "threads": 2}
    assert compare.known_peak(doc)[0] == 495.0  # TF32: cuDNN's default allows it
    doc["backend"]["cudnn_allow_tf32"] = False
    assert compare.known_peak(doc)[0] == 67.0


def test_invalid_file_fails_with_its_name(tmp_path, capsys):
    good = write_docs(tmp_path, [make_doc("python")])[0]
    bad_doc = make_doc("cpp")
    bad_doc["epochs"][0]["train_seconds"] = 0.0
    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps(bad_doc))
    assert cli.main([str(good), str(bad), "--out", str(tmp_path / "out")]) == 1
    [err] = capsys.readouterr().err.strip().splitlines()
    assert err.startswith(f"suite.report: error: {bad}: $.epochs[0].train_seconds: "), err


def test_pngs_written_and_not_empty(tmp_path):
    docs = [make_doc("python"), make_doc("cpp"), make_doc("python", model="resnet34"),
            make_doc("cpp", model="resnet34")]
    assert cli.main([*map(str, write_docs(tmp_path, docs)), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    for name in ("epoch_time.png", "test_accuracy.png", "latency.png"):
        png = tmp_path / "out" / name
        assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in text


def test_prose_comes_from_the_template(tmp_path, monkeypatch):
    """Each part of a section (markdown.SECTION_BLOCKS) and each run note (sections.RUN_NOTES) is a block of
    report.md.tmpl, and the report's words are the template's: edit it and the report follows."""
    assert {b.__name__ for b in markdown.SECTION_BLOCKS} | set(sections.RUN_NOTES) <= set(markdown.blocks())
    edited = tmp_path / "report.md.tmpl"
    edited.write_text(markdown.TEMPLATE.read_text().replace("### Run facts", "### Facts of the runs"))
    monkeypatch.setattr(markdown, "TEMPLATE", edited)
    markdown.blocks.cache_clear()
    try:
        md = build_report(write_docs(tmp_path, [make_doc("python"), make_doc("cpp")]), tmp_path / "out").read_text()
    finally:
        markdown.blocks.cache_clear()
    assert "### Facts of the runs" in md and "### Run facts" not in md


def test_sweep_section_is_drawn_by_the_report(tmp_path):
    """--sweep: the crossover section and its plot, recomputed from the sweep's runs with the report's own
    comparisons; a file that is not a sweep result is one error naming it."""
    runs = {str(bs): {"python": [{"train_step_ms": [ms * 1.3 * (1 + 0.01 * i)], "latency_ms": [ms]} for i in range(4)],
                      "cpp": [{"train_step_ms": [ms * (1 + 0.01 * i)], "latency_ms": [ms]} for i in range(4)]}
            for bs, ms in ((1, 10.0), (2, 20.0))}
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps({"args": {"model": "resnet18", "device": "cpu", "repeats": 4, "steps": 4,
                                          "latency_iters": 1}, "runs": runs, "failures": [],
                                 "startup": {lang: {"to_first_step_s": None, "to_first_inference_s": None,
                                                    "peak_rss_mib": None} for lang in ("python", "cpp")}}))
    docs = write_docs(tmp_path, [make_doc("python"), make_doc("cpp")])
    md = build_report(docs, tmp_path / "out", sweep=sweep).read_text()
    assert "## The crossover: Python / C++ by batch size" in md
    assert "C++ is measurably faster at every batch size up to 2." in md
    assert (tmp_path / "out" / "crossover.png").stat().st_size > 1000
    sweep.write_text(json.dumps({"args": {}}))
    with pytest.raises(cli.ResultsError, match="not a sweep result"):
        build_report(docs, tmp_path / "out2", sweep=sweep)


def dist_doc(language, step_seconds, synced, batch=32, **config):
    """make_doc as rank 0's document of a torchrun job: `step_seconds` holds every rank's step times (one row per
    rank), `synced` whether each step averaged its gradients (--no-sync-blocks)."""
    doc = make_doc(language, **config)
    world = len(step_seconds)
    doc["distributed"] = {"world_size": world, "local_world_size": world, "nodes": 1, "backend": "gloo",
                          "grad_sync": "ddp", "per_rank_batch_size": batch, "global_batch_size": world * batch,
                          "no_sync_blocks": 2, "timeout_seconds": 300, "step_seconds": step_seconds,
                          "step_synced": synced, "step_losses": None}
    return validate_results(doc)


def test_scaling_section_reads_the_slowest_rank_of_each_step(tmp_path):
    """Torchrun jobs of 1 and 2 ranks: their own sections (world sizes are not comparable runs), and the report's
    scaling section across them: per step the slowest rank's time, synced steps only; global images/s; weak-scaling
    efficiency against the one-rank job; exposed communication (synced median minus unsynced median); the plot."""
    synced = [True, True, False, False]
    docs = [dist_doc(lang, rows, synced) for lang in ("python", "cpp") for rows in (
        [[1.0, 1.0, 0.9, 0.9]],                              # 1 rank: synced median 1.0 s, 32 images/s
        [[1.0, 1.1, 0.9, 0.9], [1.2, 1.0, 0.8, 1.0]])]       # 2 ranks: job steps 1.2, 1.1 | 0.9, 1.0
    md = build_report(write_docs(tmp_path, docs), tmp_path / "out").read_text()
    assert md.count("## Section ") == 2 and "distributed.world_size = 2" in md
    scaling = md.split("## Data-parallel scaling (torchrun)")[1]
    rows = [line.split(" | ") for line in scaling.splitlines() if line.startswith("| Python ")]
    assert [(r[3], r[6], r[7], r[8], r[9]) for r in rows] == [
        ("1", "1000 (1000–1000)", "32", "1", "100"),
        ("2", "1150 (1110–1190)", "55.7", "0.87", "200")], rows  # 64 / 1.15 s; 55.7 / (2 x 32); 1.15 - 0.95 s
    assert "](scaling.png)" in scaling and (tmp_path / "out" / "scaling.png").stat().st_size > 1000
    assert "Data-parallel scaling" not in build_report(write_docs(tmp_path, [make_doc("python")]),
                                                       tmp_path / "single").read_text()


def test_the_readme_headline_is_what_its_committed_results_give():
    """README.md's headline table: every row is what `python -m suite.report --headline` gives for the results
    folder its block links (docs/results/<name>.md beside docs/results/<name>/results/): no number typed by hand."""
    import re

    from suite.report.headline import headline_rows

    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- headline:start -->", 1)[1].split("<!-- headline:end -->", 1)[0]
    [page] = set(re.findall(r"\]\((docs/results/[\w.-]+)\.md\)", block))
    paths = sorted((ROOT / page / "results").glob("*.json"))
    assert paths, f"no results under {page}/results/"
    table = [line for line in block.splitlines() if line.startswith("|")]
    assert table == headline_rows(cli.load_all(paths)), "README.md's headline differs from its results: " \
        f"python -m suite.report {page}/results/*.json --headline"


def test_the_headline_needs_one_configuration_in_both_languages():
    from suite.report.headline import headline_rows
    from suite.schema import ResultsError

    docs = cli.load_all(sorted((ROOT / "docs" / "results" / "headline-cpu" / "results").glob("*.json")))
    with pytest.raises(ResultsError, match="one model and mode in both languages"):
        headline_rows([d for d in docs if d["language"] == "python"])  # nothing to compare
    other = copy.deepcopy(docs[:2])
    for d in other:
        d["config"]["precision"] = "bf16"
    with pytest.raises(ResultsError, match="one model and mode"):
        headline_rows(docs + other)
