"""Both trainers, both models, every requested mode, with the suite's config: schema, accuracy thresholds,
languages agree. The [model x lang x mode] matrix comes from suite/plugin/config.py (pytest_generate_tests)."""

import statistics

import pytest

from bench.vocab import LANGUAGES, MODES, WARMUP_STEPS
from suite import thresholds as T
from suite.schema import validate_results


def test_results_follow_schema(trainer_results, run_config, expected_params, model, lang, mode):
    docs = trainer_results(model, lang, mode)
    assert [doc["config"]["repeat"] for doc in docs] == list(range(1, run_config.repeats + 1))
    for doc in docs:
        check_results(doc, run_config, expected_params, model, lang, mode)


def check_results(doc, run_config, expected_params, model, lang, mode):
    validate_results(doc)
    assert doc["language"] == lang and doc["model"] == model
    assert doc["param_count"] == expected_params[model]
    assert len(doc["epochs"]) == run_config.epochs
    # The mode's flags are what the trainer recorded (e.g. bf16-cl -> precision bf16, channels_last true).
    flags = MODES[mode]
    assert doc["config"]["precision"] == ("bf16" if "bf16" in flags else "fp32")
    assert doc["config"]["channels_last"] == ("--channels-last" in flags)
    assert doc["config"]["optimizer_impl"] == ("foreach" if "foreach" in flags else "per-tensor")
    assert doc["config"]["data_pipeline"] == ("idiomatic" if "idiomatic" in flags else "matched")
    assert doc["config"]["cudnn_benchmark"] == doc["backend"]["cudnn_benchmark"] == ("--cudnn-benchmark" in flags)
    unavailable = {u["feature"] for u in doc["unavailable"]}
    for path in run_config.inference_paths:
        measured = [lat for lat in doc["latency"] if lat["path"] == path]
        if f"inference path {path}" in unavailable:
            assert not measured
            continue
        assert [lat["batch_size"] for lat in measured] == run_config.latency_sizes
        assert all(len(lat["samples_ms"]) == run_config.latency_iters for lat in measured)
    assert [c["threads"] for c in doc["concurrency"]] == run_config.concurrency_counts


def test_accuracy_threshold(trainer_results, model, lang, mode):
    docs = trainer_results(model, lang, mode)
    entry = T.lookup(*T.key_of(docs[0]))
    accs = [doc["final"]["test_accuracy"] for doc in docs]
    if entry is None:
        pytest.skip(f"no threshold for {T.key_of(docs[0])} in suite/thresholds.py; measured {accs}%")
    provisional = " PROVISIONAL: " + entry["source"] if entry.get("provisional") else ""
    print(f"{lang} {model} {mode}: test accuracy {accs}% (floor {entry['min_test_accuracy']}%){provisional}")
    for acc in accs:  # every repeat: the same seed and config, so each must reach the floor
        assert acc >= entry["min_test_accuracy"], f"{acc:.2f}% < {entry['min_test_accuracy']}% ({entry['source']})"
        assert acc < 100.0, "100% on this data means the task or the evaluation is broken"


def test_languages_agree(trainer_results, run_config, model, mode):
    if set(run_config.langs) != set(LANGUAGES):
        pytest.skip("needs --langs python,cpp")
    # Repeat 1 of each: repeats of one language share seed and config, so they add nothing to the gap.
    py, cpp = trainer_results(model, "python", mode)[0], trainer_results(model, "cpp", mode)[0]
    assert py["dataset"] == cpp["dataset"], "the two trainers read different data"
    entry = T.lookup(*T.key_of(py))
    if entry is None:
        pytest.skip(f"no threshold for {T.key_of(py)}")
    gap = abs(py["final"]["test_accuracy"] - cpp["final"]["test_accuracy"])
    print(f"{model} {mode}: python {py['final']['test_accuracy']:.2f}% cpp {cpp['final']['test_accuracy']:.2f}% "
          f"gap {gap:.2f} (max {entry['max_gap']})")
    assert gap <= entry["max_gap"]


# Python's empty sample (synchronize + clock read) may cost at most this much more than C++'s: on a GPU a
# batch-1 CUDA-graph sample is ~0.1 ms, so a few µs of wrapper would already be a few %. On CPU an empty sample
# is ~0.1 µs and the absolute gap decides; on CUDA (a cudaDeviceSynchronize, several µs, and Python's GIL release
# around it) the relative one does, so that a loaded host does not fail a correct pair.
MAX_CLOCK_GAP_US = 2.0
MAX_CLOCK_RATIO = 1.5


def clock_limit_us(cpp_us):
    """The most Python's empty sample may cost, given C++'s."""
    return max(cpp_us + MAX_CLOCK_GAP_US, cpp_us * MAX_CLOCK_RATIO)


def test_clock_costs_the_same_in_both_languages(trainer_results, run_config, model, mode):
    if set(run_config.langs) != set(LANGUAGES):
        pytest.skip("needs --langs python,cpp")
    py, cpp = (statistics.median(doc["empty_sample_us"]["median_us"] for doc in trainer_results(model, lang, mode))
               for lang in LANGUAGES)
    print(f"{model} {mode}: empty sample median python {py:.3f} µs, c++ {cpp:.3f} µs (limit {clock_limit_us(cpp):.3f})")
    assert py <= clock_limit_us(cpp)


def test_warmup_and_memory_are_recorded(trainer_results, run_config, model, lang, mode):
    """The warm-up ran before the clock and took time; "fp32" names TF32 where CUDA uses it; peak memory
    is the device's (CUDA) or unknown (CPU), for training and each inference path apart."""
    for doc in trainer_results(model, lang, mode):
        check_warmup_and_memory(doc, run_config)


def check_warmup_and_memory(doc, run_config):
    steps = doc["config"]["warmup_steps"]
    assert steps == (run_config.warmup_steps if run_config.warmup_steps is not None else WARMUP_STEPS)
    assert (doc["warmup_seconds"] > 0) if steps else doc["warmup_seconds"] is None
    cuda = doc["device"]["type"] == "cuda"
    assert ("TF32" in doc["precision_label"]) == (cuda and doc["config"]["precision"] == "fp32")
    for peak in [doc["peak_memory_bytes"]] + [lat["peak_memory_bytes"] for lat in doc["latency"]]:
        assert (isinstance(peak, int) and peak > 0) if cuda else peak is None
