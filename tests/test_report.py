"""suite.report: table numbers against the documents, aggregation, separation, errors, plots.

Fast: no training. Each document is a committed real results file (schema/results.schema.json, version 3) with
the epoch times, latency samples, config and (schema 4's) start-up a test needs, validated and written to tmp_path.
"""

import copy
import csv
import json

import pytest

from bench.results import percentile, summarize_ms
from suite import report, stats
from suite.harness import ROOT
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


def ratio_row(rows, metric):
    return next(r for r in rows if r["metric"] == metric)


def write_docs(tmp_path, docs):
    paths = []
    for i, doc in enumerate(docs):
        path = tmp_path / f"run{i}-{doc['language']}-{doc['model']}.json"
        path.write_text(json.dumps(doc))
        paths.append(path)
    return paths


def median(values):
    return percentile(sorted(values), 50)


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_tables_match_the_documents(tmp_path):
    py = make_doc("python", train_seconds=(2.0, 1.0, 1.5))
    cpp = make_doc("cpp", train_seconds=(1.0, 0.8, 0.9), latency={1: [1.5, 1.0, 2.5], 32: [10.0, 11.0]})
    md = report.build_report(write_docs(tmp_path, [py, cpp]), tmp_path / "out")
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
    md = report.build_report(write_docs(tmp_path, py + cpp), tmp_path / "out").read_text()
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
    assert "repeat" not in report.comparability_key(py[0]), "repeats of one configuration share a section"
    assert "## Section" not in md and "¹" not in md
    row_md = next(line for line in md.splitlines() if line.startswith("| default | time per epoch (s) |"))
    assert f"| {float(ratios['time per epoch (s)']['ratio_low']):.3f}–" in row_md and "| C++ faster |" in row_md


def test_same_distribution_gives_no_verdict():
    """The same per-run epoch times in both languages, in another order: no difference shown."""
    runs = [(2.0, t, t) for t in (1.00, 1.10, 0.90, 1.05, 0.95)]
    rows = report.ratio_rows(repeats("python", runs), repeats("cpp", runs[::-1]))
    row = ratio_row(rows, "time per epoch (s)")
    assert row["unit"] == stats.UNIT_RUNS and row["ratio"] == pytest.approx(1.0)
    assert row["ratio_low"] < 1 < row["ratio_high"]
    assert row["verdict"] == report.NO_DIFFERENCE == "no difference shown (CI includes 1)"


def test_noisy_cell_is_named(tmp_path):
    py = make_doc("python", train_seconds=(3.0, 1.0, 1.2, 1.4, 1.6))  # steady IQR 0.3 / median 1.3 = 23 %
    cpp = make_doc("cpp", train_seconds=(3.0, 1.0, 1.01, 1.02, 1.03))  # 1.5 %: quiet
    md = report.build_report(write_docs(tmp_path, [py, cpp]), tmp_path / "out").read_text()
    row_md = next(line for line in md.splitlines() if line.startswith("| default | time per epoch (s) |"))
    assert row_md.count("⚠ noisy") == 1 and "1.300 (1.060–1.540) ⚠ noisy" in row_md
    noisy = next(line for line in md.splitlines() if line.startswith("Noisy (IQR/median > 10%): "))
    assert "Python resnet18 default time per epoch (s) 23%" in noisy
    assert "C++ resnet18 default time per epoch (s)" not in noisy


def test_one_run_per_language_compares_samples_and_says_so(tmp_path):
    py = make_doc("python", train_seconds=(3.0, 2.0, 2.1, 2.2, 2.05))
    cpp = make_doc("cpp", train_seconds=(2.0, 1.0, 1.1, 1.2, 1.05))
    md = report.build_report(write_docs(tmp_path, [py, cpp]), tmp_path / "out").read_text()
    ratios = {r["metric"]: r for r in json.loads((tmp_path / "out" / "report.json").read_text())
              ["sections"][0]["ratios"]}
    epochs = ratios["time per epoch (s)"]
    assert (epochs["unit"], epochs["n_python"], epochs["n_cpp"]) == (stats.UNIT_SAMPLES, 4, 4)
    assert epochs["ratio_low"] > 1 and epochs["verdict"] == "C++ faster"
    assert ratios["epoch 1 (s)"]["ratio_low"] is None  # one sample per run: no interval
    assert ratios["epoch 1 (s)"]["verdict"] == "n/a: too few samples for an interval"
    assert f"{epochs['ratio_low']:.3f}–{epochs['ratio_high']:.3f} ¹ | C++ faster |" in md
    assert f"¹ Fewer than {stats.MIN_RUNS} runs on a side" in md and "run-to-run noise is not included" in md


def test_three_runs_a_side_compare_pooled_samples_and_say_so():
    """3 runs a side: a bootstrap over 3 per-run medians would be narrower than 95%, and no Mann-Whitney over them
    can reach 0.05; so the row compares the pooled samples, marked as such."""
    py = repeats("python", [(2.0, 1.5 + d, 1.5 + d) for d in (0.0, 0.01, 0.02)])
    cpp = repeats("cpp", [(2.0, 1.0 + d, 1.0 + d) for d in (0.0, 0.01, 0.02)])
    row = ratio_row(report.ratio_rows(py, cpp), "time per epoch (s)")
    assert (row["unit"], row["n_python"], row["n_cpp"]) == (stats.UNIT_SAMPLES, 6, 6)


def test_over_runs_a_verdict_needs_the_test_to_agree_with_the_interval():
    """4 runs a side that overlap (one C++ run slower than one Python run): the percentile bootstrap of the ratio
    of medians excludes 1, but the Mann-Whitney p over the runs is above 0.05: no verdict. Separate them: one."""
    py = repeats("python", [(2.0, t, t) for t in (1.10, 1.12, 1.14, 1.13)])
    cpp = repeats("cpp", [(2.0, t, t) for t in (1.00, 1.01, 1.02, 1.11)])
    row = ratio_row(report.ratio_rows(py, cpp), "time per epoch (s)")
    assert row["unit"] == stats.UNIT_RUNS and row["ratio_low"] > 1
    assert 2 * row["p_greater"] > report.VERDICT_P and row["verdict"].startswith("no difference shown (Mann-Whitney")
    cpp = repeats("cpp", [(2.0, t, t) for t in (1.00, 1.01, 1.02, 1.03)])
    row = ratio_row(report.ratio_rows(py, cpp), "time per epoch (s)")
    assert 2 * row["p_greater"] <= report.VERDICT_P and row["verdict"] == "C++ faster"


def test_one_epoch_runs_have_no_steady_state():
    """A smoke run of one epoch: no time-per-epoch row, but epoch 1 compared and shown in the results table."""
    py, cpp = make_doc("python", train_seconds=(1.0,)), make_doc("cpp", train_seconds=(5.0,))
    rows = report.ratio_rows([py], [cpp])
    assert "time per epoch (s)" not in [r["metric"] for r in rows]
    assert ratio_row(rows, "epoch 1 (s)")["ratio"] == pytest.approx(0.2)
    assert report.aggregate_runs([py])["epoch_seconds"]["median"] == 1.0


def test_epoch1_and_startup_rows(tmp_path):
    py = repeats("python", [(2.0 + i / 100, 1.0, 1.0) for i in range(5)], startup_seconds=3.0)
    cpp = repeats("cpp", [(1.0 + i / 100, 1.0, 1.0) for i in range(5)], startup_seconds=0.5)
    for i, doc in enumerate(py + cpp):
        doc["startup_seconds"] += i / 100  # no two alike
    md = report.build_report(write_docs(tmp_path, py + cpp), tmp_path / "out").read_text()
    ratios = {r["metric"]: r for r in read_csv(tmp_path / "out" / "ratios.csv")}
    assert float(ratios["start-up (s)"]["ratio"]) == pytest.approx(3.02 / 0.57)
    assert ratios["start-up (s)"]["verdict"] == ratios["epoch 1 (s)"]["verdict"] == "C++ faster"
    assert float(ratios["epoch 1 (s)"]["ratio"]) == pytest.approx(2.02 / 1.02)
    assert "| Python | resnet18 | default | fp32 | 3.02 (3.00–3.04) |" in md  # Run facts: Start-up (s)

    old = report.ratio_rows([make_doc("python")], [make_doc("cpp")])  # documents before schema 4
    assert "start-up (s)" not in [r["metric"] for r in old] and "epoch 1 (s)" in [r["metric"] for r in old]
    assert report.aggregate_runs([make_doc("python")])["startup_seconds"] is None


def test_inference_paths_and_concurrency_tables(tmp_path):
    lat = {("eager", 1): [2.0, 2.2, 2.4], ("aoti", 1): [1.0, 1.1, 1.2], ("compile", 1): [1.5, 1.6, 1.7]}
    py = make_doc("python", latency=lat, concurrency={1: (1.0, [1.0] * 50), 4: (2.0, [4.0] * 200)})
    cpp_lat = {k: v for k, v in lat.items() if k[0] != "compile"}
    cpp = make_doc("cpp", latency=cpp_lat, concurrency={1: (0.8, [0.8] * 50), 4: (0.5, [0.5] * 200)})
    cpp["unavailable"] = [{"feature": "inference path compile", "reason": "torch.compile has no C++ API"}]
    md = report.build_report(write_docs(tmp_path, [py, cpp]), tmp_path / "out").read_text()
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
    report.build_report(write_docs(tmp_path, [first, second]), tmp_path / "out")
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
    md = report.build_report(write_docs(tmp_path, [base, other_lr, other_data, moved]), tmp_path / "out")
    text = md.read_text()
    assert text.count("## Section ") == 3
    assert "config.lr = 0.1" in text and "config.lr = 0.02" in text
    assert "dataset.sha256 = cdcdcdcdcdcd" in text
    sections = json.loads((tmp_path / "out" / "report.json").read_text())["sections"]
    assert [s["results"][0]["runs"] for s in sections] == [2, 1, 1]


def test_modes_share_a_section_side_by_side(tmp_path):
    fp32 = make_doc("python")
    bf16 = make_doc("python", precision="bf16", channels_last=True)
    md = report.build_report(write_docs(tmp_path, [fp32, bf16]), tmp_path / "out")
    modes = [r["mode"] for r in read_csv(tmp_path / "out" / "results_table.csv")]
    assert modes == ["default", "precision=bf16, channels_last=True"]
    assert "## Section" not in md.read_text()


def test_peak_flag_gives_the_floor(tmp_path):
    doc = make_doc("python", train_seconds=(2.0,))
    report.build_report(write_docs(tmp_path, [doc]), tmp_path / "out", peak_tflops=1.0)
    floor = json.loads((tmp_path / "out" / "report.json").read_text())["sections"][0]["floor"][0]
    _, training = report.flops_per_image("resnet18")
    assert floor["flops_per_image_training"] == training > 1e9  # ResNet18 at 32x32: about 3.3 GFLOPs
    assert floor["floor_epoch_seconds"] == pytest.approx(training * doc["dataset"]["train_records"] / 1e12)
    assert floor["epoch_multiple"] == pytest.approx(2.0 / floor["floor_epoch_seconds"])


def test_known_gpu_peak():
    doc = make_doc("python")
    doc["device"] = {"type": "cuda", "name": "NVIDIA H100 80GB HBM3", "threads": 2}
    assert report.known_peak(doc)[0] == 495.0  # TF32: cuDNN's default allows it
    doc["backend"]["cudnn_allow_tf32"] = False
    assert report.known_peak(doc)[0] == 67.0


def test_invalid_file_fails_with_its_name(tmp_path, capsys):
    good = write_docs(tmp_path, [make_doc("python")])[0]
    bad_doc = make_doc("cpp")
    bad_doc["epochs"][0]["train_seconds"] = 0.0
    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps(bad_doc))
    assert report.main([str(good), str(bad), "--out", str(tmp_path / "out")]) == 1
    [err] = capsys.readouterr().err.strip().splitlines()
    assert err.startswith(f"suite.report: error: {bad}: $.epochs[0].train_seconds: "), err


def test_pngs_written_and_not_empty(tmp_path):
    docs = [make_doc("python"), make_doc("cpp"), make_doc("python", model="resnet34"),
            make_doc("cpp", model="resnet34")]
    assert report.main([*map(str, write_docs(tmp_path, docs)), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    for name in ("epoch_time.png", "test_accuracy.png", "latency.png"):
        png = tmp_path / "out" / name
        assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in text
