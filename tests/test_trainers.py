"""Both trainers, both models, with the suite's config: schema, accuracy thresholds, languages agree."""

import pytest

from bench import thresholds as T
from bench.results import validate_results


def pytest_generate_tests(metafunc):
    cfg = metafunc.config.bench_run
    if "model" in metafunc.fixturenames:
        metafunc.parametrize("model", cfg.models)
    if "lang" in metafunc.fixturenames:
        metafunc.parametrize("lang", cfg.langs)


def test_results_follow_schema(trainer_results, run_config, model, lang):
    doc = trainer_results(model, lang)
    validate_results(doc)
    assert doc["language"] == lang and doc["model"] == model
    assert doc["param_count"] == {"resnet18": 11_173_962, "resnet34": 21_282_122}[model]
    assert len(doc["epochs"]) == run_config.epochs
    assert [lat["batch_size"] for lat in doc["latency"]] == [int(b) for b in run_config.latency_batch_sizes.split(",")]
    assert all(len(lat["samples_ms"]) == run_config.latency_iters for lat in doc["latency"])


def test_accuracy_threshold(trainer_results, model, lang):
    doc = trainer_results(model, lang)
    entry = T.lookup(*T.key_of(doc))
    if entry is None:
        pytest.skip(f"no threshold for {T.key_of(doc)} in bench/thresholds.py; measured "
                    f"{doc['final']['test_accuracy']:.2f}%")
    acc = doc["final"]["test_accuracy"]
    print(f"{lang} {model}: test accuracy {acc:.2f}% (floor {entry['min_test_accuracy']}%)")
    assert acc >= entry["min_test_accuracy"], f"{acc:.2f}% < {entry['min_test_accuracy']}% ({entry['source']})"
    assert acc < 100.0, "100% on this data means the task or the evaluation is broken"


def test_languages_agree(trainer_results, run_config, model):
    if set(run_config.langs) != {"python", "cpp"}:
        pytest.skip("needs --langs python,cpp")
    py, cpp = trainer_results(model, "python"), trainer_results(model, "cpp")
    assert py["dataset"] == cpp["dataset"], "the two trainers read different data"
    entry = T.lookup(*T.key_of(py))
    if entry is None:
        pytest.skip(f"no threshold for {T.key_of(py)}")
    gap = abs(py["final"]["test_accuracy"] - cpp["final"]["test_accuracy"])
    print(f"{model}: python {py['final']['test_accuracy']:.2f}% cpp {cpp['final']['test_accuracy']:.2f}% gap {gap:.2f}")
    assert gap <= entry["max_gap"]
