"""The same ops, no hidden syncs, the same timed work: read from both trainers' profiler traces (--trace-steps).

Each (language, mode) is its canonical tiny run (suite/plugin/tiny.py), shared with the other tests of the session,
on the suite's device (the GPU session's correctness stage runs these on CUDA): its last epoch traced whole (K steps,
K = tiny.TRACE_STEPS), with its evaluation, and per inference path and batch size the latency's warm-up and K
samples. suite/traces.py reads the traces. The same runs also carry timed latency samples and concurrent inference,
whose process state tests/test_process.py compares.
"""

import difflib

import pytest

from bench.vocab import LANGUAGES, MODES, TRACE_INFER, TRACE_INFER_WARMUP
from suite import traces as T
from suite.plugin import tiny

STEPS, LATENCY_WARMUP = tiny.TRACE_STEPS, tiny.LATENCY_WARMUP
# What one language's API runs where the other runs nothing, by design: (language, the op, the op it follows,
# why). The comparison drops a run of that op right after the one it follows; anywhere else it counts.
ALLOWED_DIFFERENCES = [
    ("cpp", "aten::detach_", "aten::cross_entropy_loss",
     "LibTorch's Optimizer::zero_grad(set_to_none=true), called between the loss and backward, detaches each "
     "gradient before resetting it; Python's sets each .grad to None"),
]


@pytest.fixture(scope="session")
def traced(tiny_run, run_config):
    """traced(lang, mode): (results, the training trace's events) of that trainer's traced run."""
    def get(lang, mode):
        doc = tiny_run(lang, mode, run_config.resolved_device).doc
        return doc, T.load(doc["traces"]["train"])
    return get


def allowed(ops, lang):
    """`ops` without this language's allowed differences (a run of the op right after the op it follows)."""
    for who, extra, after, _why in ALLOWED_DIFFERENCES:
        if who == lang:
            ops = [op for i, op in enumerate(ops) if not (op == extra and run_follows(ops, i, extra, after))]
    return ops


def run_follows(ops, i, extra, after):
    """Is ops[i] in a run of `extra` that starts right after `after`?"""
    while i > 0 and ops[i - 1] == extra:
        i -= 1
    return i > 0 and ops[i - 1] == after


def step_ops(events, lang):
    threads = T.trainer_threads(events)
    return [allowed(T.dispatched_ops(events, window, threads), lang) for window in T.steps(events)]


def first_difference(a, b):
    """The first place where two op sequences part, with a few ops of context, as unified-diff lines."""
    diff = list(difflib.unified_diff(a, b, "python", "c++", n=3, lineterm=""))
    return "\n".join(diff[:40])


@pytest.mark.parametrize("mode", list(MODES))
def test_a_step_runs_the_same_aten_ops_in_both_languages(traced, mode):
    """Forward, backward and optimizer: the same aten ops in the same order, step by step."""
    py, cpp = (step_ops(traced(lang, mode)[1], lang) for lang in LANGUAGES)
    assert len(py) == len(cpp) == STEPS, (len(py), len(cpp))
    for i, (a, b) in enumerate(zip(py, cpp)):
        assert len(a) > 100, f"step {i}: only {len(a)} ops traced: {a[:10]}"  # a ResNet step runs hundreds
        assert a == b, f"{mode}: step {i} differs ({len(a)} ops in Python, {len(b)} in C++):\n" + \
            first_difference(a, b)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("lang", LANGUAGES)
def test_no_host_sync_inside_a_step(traced, lang, mode):
    """No aten::item / _local_scalar_dense (and, on CUDA, no blocking runtime call) inside any step, nor anywhere
    else in the timed epoch (its batches' fetch included) but in the clock reads at its ends."""
    _, events = traced(lang, mode)
    threads = T.trainer_threads(events)
    for i, window in enumerate(T.steps(events)):
        assert not T.host_syncs(events, window, threads), f"{lang} {mode} step {i} waits for the device: " \
            f"{T.host_syncs(events, window, threads)}"
    start, end = T.epoch_marks(events)[0]
    syncs = T.host_syncs(events, T.between(start, end), threads)
    assert not syncs, f"{lang} {mode}: the timed epoch waits for the device outside its clock reads: {syncs}"


def inference_calls(doc):
    """{"bs=B path=P": (warm-up calls, [each sample's autograd mode], [each sample's dispatched aten ops])} of a run's
    inference trace (the mode and ops of each sample in the order they ran)."""
    events, calls = T.load(doc["traces"]["inference"]), {}
    for scope in T.scopes(events, TRACE_INFER_WARMUP) + T.inference_samples(events):
        label, _, mode = scope.name.split(" ", 1)[1].partition(" mode=")
        warmups, modes, ops = calls.setdefault(label, [0, [], []])
        if scope.name.startswith(TRACE_INFER_WARMUP):
            calls[label][0] += 1
        else:
            modes.append(mode)
            ops.append(T.dispatched_ops(events, scope, {scope.tid}))
    return {label: tuple(call) for label, call in calls.items()}


@pytest.mark.parametrize("mode", list(MODES))
def test_an_inference_sample_runs_the_same_aten_ops_in_both_languages(traced, mode):
    """Every inference path both languages ran, at every latency batch size, held to the training step's standard:
    the same number of warm-up calls before the samples, the same autograd mode, and the same aten ops in each
    sample, in both languages. The traced pass runs the timed latency's own code (time_samples in its contexts)."""
    (py_doc, _), (cpp_doc, _) = traced("python", mode), traced("cpp", mode)
    py, cpp = inference_calls(py_doc), inference_calls(cpp_doc)
    expected = {f"bs={bs} path={p}" for bs in py_doc["config"]["latency_batch_sizes"]
                for p in py_doc["config"]["inference_paths"] if p in ("eager", "aoti")
                or (p == "cuda-graph" and py_doc["device"]["type"] == "cuda")}
    assert set(py) == set(cpp) == expected, (sorted(py), sorted(cpp))
    for label in sorted(expected):
        (py_warmups, py_modes, py_ops), (cpp_warmups, cpp_modes, cpp_ops) = py[label], cpp[label]
        assert py_warmups == cpp_warmups == LATENCY_WARMUP, f"{label}: warm-up calls {py_warmups} vs {cpp_warmups}"
        assert py_modes == cpp_modes == ["inference"] * STEPS, f"{label}: autograd modes {py_modes} vs {cpp_modes}"
        for i, (a, b) in enumerate(zip(py_ops, cpp_ops, strict=True)):
            assert len(a) > 20, f"{label} sample {i}: only {len(a)} ops traced: {a}"  # a ResNet forward runs ~60
            assert a == b, f"{mode} {label}: sample {i} differs ({len(a)} ops in Python, {len(b)} in C++):\n" + \
                first_difference(a, b)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_epoch_window_holds_the_draws_and_not_the_evaluation(traced, lang):
    """The timed epoch opens (a clock read) before the epoch's draws and its first step, and closes after the last
    step and before the evaluation, in both languages: the intervals time the same work."""
    doc, events = traced(lang, "default")
    clocks, first_draw, first_step, last_step, evaluation = T.epoch_marks(events)
    assert len(clocks) == 2 and first_draw and first_step and evaluation, (clocks, first_draw, evaluation)
    start, end = clocks
    assert start.end <= first_draw.ts, f"{lang}: the epoch's clock starts after its draws"
    assert first_draw.end <= first_step.ts and last_step.end <= end.ts, f"{lang}: a step outside the window"
    assert end.end <= evaluation.ts, f"{lang}: the evaluation is inside the timed epoch"
    # The recorded time is the marks' interval: it was read inside them (two clocks: 0.1 ms of slack).
    recorded_ns = doc["epochs"][-1]["train_seconds"] * 1e9
    assert end.ts - start.end - 1e5 <= recorded_ns <= end.end - start.ts + 1e5, \
        f"{lang}: train_seconds {recorded_ns / 1e9:.6f} s is not the interval between the epoch's clock marks " \
        f"({(end.ts - start.end) / 1e9:.6f} to {(end.end - start.ts) / 1e9:.6f} s)"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_traces_are_named_in_the_results(traced, lang):
    doc, events = traced(lang, "default")
    assert doc["config"]["trace_steps"] == STEPS
    assert len(T.steps(events)) == STEPS
    inference = T.inference_samples(T.load(doc["traces"]["inference"]))
    assert [e.name for e in inference] == [f"{TRACE_INFER} bs={bs} path=eager mode=inference"
                                           for bs in tiny.LATENCY_SIZES for _ in range(STEPS)]
    b = T.breakdown(doc["traces"]["train"])
    assert 0 < b["in_ops_us"] < b["wall_us"] and b["between_ops_us"] == pytest.approx(b["wall_us"] - b["in_ops_us"])


def fake_trace(tmp_path, events):
    """A Chrome trace of (name, cat, tid, ts, dur) events, as Kineto writes them."""
    import json

    path = tmp_path / "train.json"
    path.write_text(json.dumps({"traceEvents": [
        {"ph": "X", "name": n, "cat": c, "pid": 1, "tid": tid, "ts": ts, "dur": dur} for n, c, tid, ts, dur in events]
        + [{"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "x"}}]}))
    return path


def test_where_a_step_goes_counts_outermost_ops_once_across_threads(tmp_path):
    """A step of 100 µs: ops at 10-40 (with a nested op) and 50-70 on the main thread, a backward node at 60-90
    on the autograd thread: 70 µs in ops (overlaps once), 30 µs between them; a kernel at 90-120: 10 µs of device
    time in the step; the sync op after the step is not the step's."""
    path = fake_trace(tmp_path, [
        ("bench::train_step", "user_annotation", 1, 0, 100),
        ("aten::conv2d", "cpu_op", 1, 10, 30), ("aten::convolution", "cpu_op", 1, 15, 5),
        ("aten::add_", "cpu_op", 1, 50, 20),
        ("autograd::engine::evaluate_function: AddBackward0", "cpu_op", 2, 60, 30),
        ("aten::copy_", "cpu_op", 3, 20, 60),  # another thread (a pipeline worker): not the step's
        ("kernel_a", "kernel", 7, 90, 30),
        ("aten::item", "cpu_op", 1, 110, 5),
    ])
    events = T.load(path)
    [step] = T.step_times(events)
    assert (step.wall_ns, step.in_ops_ns, step.between_ops_ns, step.device_busy_ns) == (100_000, 70_000, 30_000,
                                                                                      10_000)
    threads = T.trainer_threads(events)
    assert threads == {1, 2}
    assert T.dispatched_ops(events, T.steps(events)[0], threads) == [
        "aten::conv2d", "aten::add_", "autograd::engine::evaluate_function: AddBackward0"]
    assert T.host_syncs(events, T.steps(events)[0], threads) == []
    assert T.breakdown(path)["steps"] == 1


def test_a_sync_inside_a_step_is_found(tmp_path):
    path = fake_trace(tmp_path, [("bench::train_step", "user_annotation", 1, 0, 100),
                                 ("aten::item", "cpu_op", 1, 10, 5), ("aten::_local_scalar_dense", "cpu_op", 1, 11, 3),
                                 ("cudaStreamSynchronize", "cuda_runtime", 1, 12, 1)])
    events = T.load(path)
    assert T.host_syncs(events, T.steps(events)[0], T.trainer_threads(events)) == [
        "aten::item", "aten::_local_scalar_dense", "cudaStreamSynchronize"]


def test_a_file_that_is_not_a_trace_is_one_clear_error(tmp_path):
    (tmp_path / "x.json").write_text("[]")
    with pytest.raises(T.TraceError, match="has no traceEvents"):
        T.load(tmp_path / "x.json")
    assert T.main([str(tmp_path / "x.json")]) == 1


def test_the_report_shows_where_a_step_goes_per_language(traced, tmp_path):
    """suite.report reads the traces the results name and puts both languages' step breakdown side by side."""
    import json

    from suite.report import build_report

    paths = []
    for lang in LANGUAGES:
        doc, _ = traced(lang, "default")
        paths.append(tmp_path / f"{lang}.json")
        paths[-1].write_text(json.dumps(doc))
    md = build_report(paths, tmp_path / "report").read_text()
    table = md.split("### Where a training step's time goes")[1].split("###")[0]
    rows = [line for line in table.splitlines() if line.startswith(("| Python |", "| C++ |"))]
    assert len(rows) == 2, table
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        wall, in_ops, between = (float(c) for c in cells[3:6])
        assert wall == pytest.approx(in_ops + between, abs=0.002) and cells[-1] == str(STEPS)
