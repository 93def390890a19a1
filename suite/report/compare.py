"""Python against C++: each shared quantity's ratio with its 95% interval (suite/stats.py), the verdict, and the
distance from the hardware floor.

A verdict names a faster language only when the comparison rests on runs (stats.MIN_RUNS_FOR_RUN_INTERVAL or
more a side), its interval excludes 1 and the two-sided Mann-Whitney p over the runs is at most VERDICT_P.
Samples of one process leave run-to-run noise out of an interval, so with fewer runs there is no verdict, and
the cell says why.
"""

import functools
from dataclasses import dataclass

from bench.vocab import INFERENCE_PATHS
from suite import metrics, stats
from suite.report.samples import RunSamples

# Over runs, the two-sided Mann-Whitney p a verdict also needs: with few runs a percentile bootstrap is narrower
# than its nominal 95%.
VERDICT_P = 0.05
NO_DIFFERENCE = "no difference shown (CI includes 1)"


def too_few_runs(n_python, n_cpp):
    """The verdict cell of a comparison over fewer runs than an interval over runs needs."""
    if n_python != n_cpp:
        runs = f"{n_python} Python / {n_cpp} C++ runs"
    else:
        runs = "one run per language" if n_python == 1 else f"{n_python} runs per language"
    return f"{runs}: no verdict; --repeats {stats.MIN_RUNS_FOR_RUN_INTERVAL} or more"


@dataclass(frozen=True)
class Ratio:
    """Python / C++ of one quantity: both sides' samples, their comparison and the verdict."""

    python: RunSamples
    cpp: RunSamples
    comparison: stats.Comparison
    lower_is_better: bool  # a time: lower is faster; a rate: higher is faster

    @property
    def p_two_sided(self):
        c = self.comparison
        return min(1.0, 2 * min(c.p_greater, c.p_less))

    @property
    def verdict(self):
        c = self.comparison
        if c.unit != stats.UNIT_RUNS:
            return too_few_runs(self.python.n_runs, self.cpp.n_runs)
        if c.low is None:
            return "n/a: no interval"
        if not c.excludes_one():
            return NO_DIFFERENCE
        if self.p_two_sided > VERDICT_P:
            return f"no difference shown (Mann-Whitney p = {self.p_two_sided:.2g} over runs)"
        python_smaller = c.high < 1
        better = "uses less memory" if self.python.unit == "MiB" else "faster"
        return f"{'Python' if python_smaller == self.lower_is_better else 'C++'} {better}"


def ratio(python, cpp, lower_is_better=True):
    """Python / C++ of two RunSamples of one quantity; None when a side has no sample."""
    if not python or not cpp:
        return None
    return Ratio(python, cpp, stats.compare_runs(python.runs, cpp.runs), lower_is_better)


def quantities(py_docs, cpp_docs):
    """(name, samples of a language's documents, lower is better) for everything both languages measured."""
    found = [("time per epoch (s)", metrics.steady_epoch_seconds, True),
             ("training step (ms)", metrics.steady_step_ms, True),
             ("images/s (train)", metrics.steady_images_per_second, False),
             ("epoch 1 (s)", metrics.first_epoch_seconds, True), ("start-up (s)", metrics.startup_seconds, True),
             ("peak RSS (MiB)", metrics.peak_rss_mib, True), ("peak CUDA memory (MiB)", metrics.peak_cuda_mib, True)]
    cpp_points, cpp_counts = set(latency_points(cpp_docs)), set(concurrency_counts(cpp_docs))
    for path, bs in [p for p in latency_points(py_docs) if p in cpp_points]:
        found.append((f"latency {path} bs={bs} (ms/batch)", functools.partial(latency_of, path, bs), True))
    for n in [n for n in concurrency_counts(py_docs) if n in cpp_counts]:
        found.append((f"images/s, {n} threads x bs 1", functools.partial(throughput_of, n), False))
    return found


def latency_of(path, batch_size, docs):
    return metrics.latency_ms(docs, path, batch_size)


def throughput_of(threads, docs):
    return metrics.concurrency_images_per_second(docs, threads)


def latency_points(docs):
    """The (path, batch size) pairs measured, paths in the trainers' order, then by batch size."""
    points = {(lat["path"], lat["batch_size"]) for doc in docs for lat in doc["latency"]}
    return sorted(points, key=lambda p: (INFERENCE_PATHS.index(p[0]), p[1]))


def concurrency_counts(docs):
    return sorted({c["threads"] for doc in docs for c in doc["concurrency"]})


def ratio_rows(py_docs, cpp_docs):
    """{quantity: Ratio} for every quantity both languages measured; the documents of a language are its runs."""
    found = {name: ratio(samples(py_docs), samples(cpp_docs), lower)
             for name, samples, lower in quantities(py_docs, cpp_docs)}
    return {name: r for name, r in found.items() if r}


# The sweep's quantities (suite/experiments/sweep.py): each run's samples under these keys, in ms.
SWEEP_METRICS = {"train_step_ms": "training step (ms)", "latency_ms": "inference latency (ms)"}


def sweep_ratios(runs):
    """{metric: {batch size: Ratio or None}} from a sweep's runs ({batch size: {language: [{metric: samples}]}},
    one dict per run; batch sizes may be JSON's string keys)."""
    return {metric: {int(bs): ratio(*(RunSamples([run[metric] for run in by_lang.get(lang, [])], "ms")
                                      for lang in ("python", "cpp")))
                     for bs, by_lang in runs.items()} for metric in SWEEP_METRICS}


def crossover(by_batch_size):
    """The largest batch size up to which C++ is measurably faster at every size swept, from the smallest; None
    when it is not at the smallest (whatever happens at larger ones: the table shows them).
    by_batch_size: {batch size: Ratio or None}."""
    below = None
    for bs in sorted(by_batch_size):
        if by_batch_size[bs] is None or by_batch_size[bs].verdict != "C++ faster":
            break
        below = bs
    return below


# ---------------------------------------------------------------------------------------------------------
# Distance from the hardware floor
# ---------------------------------------------------------------------------------------------------------

# Vendor dense peaks in TFLOP/s (no sparsity). First matching substring of the device name wins, so the
# more specific names come first. "tf32" applies when cuDNN may use TF32 (PyTorch's default for convs).
KNOWN_PEAK_TFLOPS = [
    ("H100 PCIe", {"fp32": 51.0, "tf32": 378.0, "fp16": 756.0}),
    ("H200", {"fp32": 67.0, "tf32": 495.0, "fp16": 989.0}),
    ("H100", {"fp32": 67.0, "tf32": 495.0, "fp16": 989.0}),
    ("A100", {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0}),
    ("L4", {"fp32": 30.3, "tf32": 60.0, "fp16": 121.0}),
    ("V100", {"fp32": 15.7, "fp16": 125.0}),
    ("T4", {"fp32": 8.1, "fp16": 65.0}),
]
NO_PEAK = "no peak known (pass --peak-tflops)"


@functools.cache
def flops_per_image(model_name):
    """(inference, training) FLOPs for one 32x32 image, counted by torch on the real model definition.
    The meta device gives shapes without arithmetic, so counting costs nothing like a real forward."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench.model import make_model

    with torch.device("meta"):
        model = make_model(model_name)
        x = torch.empty(1, 3, 32, 32)
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(x)
    inference = counter.get_total_flops()
    model.train()
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return inference, counter.get_total_flops()


def precision_of(doc):
    """Which peak applies: the half-precision one for bf16 (the tables' fp16 column: the same tensor-core rate),
    else TF32 where cuDNN is allowed to use it."""
    if doc["config"]["precision"] == "bf16":
        return "fp16"
    return "tf32" if doc["backend"]["cudnn_allow_tf32"] else "fp32"


def known_peak(doc):
    """(TFLOP/s, source) for the device of `doc`, or (None, reason)."""
    if doc["device"]["type"] == "cuda":
        for name, peaks in KNOWN_PEAK_TFLOPS:
            if name in doc["device"]["name"]:
                precision = precision_of(doc)
                precision = precision if precision in peaks else "fp32"
                return peaks[precision], f"{name} dense {precision} peak (vendor spec)"
    return None, NO_PEAK


def floor_row(docs, epoch_seconds, latency_bs1_ms, peak_tflops):
    """FLOPs per image, the peak, the floor (FLOPs / peak) of an epoch and of a batch-1 forward, and how many
    times the floor the runs' medians took (RunSamples of the steady epochs and of eager bs 1 latency)."""
    doc = docs[0]
    peak, source = (peak_tflops, "--peak-tflops") if peak_tflops else known_peak(doc)
    inference, training = flops_per_image(doc["model"])
    row = {"flops_per_image_inference": inference, "flops_per_image_training": training,
           "train_images": doc["dataset"]["train_records"], "peak_tflops": peak, "peak_source": source,
           "floor_epoch_seconds": None, "epoch_multiple": None, "floor_latency_bs1_ms": None,
           "latency_bs1_multiple": None}
    if peak:
        row["floor_epoch_seconds"] = training * row["train_images"] / (peak * 1e12)
        row["floor_latency_bs1_ms"] = inference / (peak * 1e12) * 1e3
        if epoch_seconds:
            row["epoch_multiple"] = epoch_seconds.median / row["floor_epoch_seconds"]
        if latency_bs1_ms:
            row["latency_bs1_multiple"] = latency_bs1_ms.median / row["floor_latency_bs1_ms"]
    return row
