"""Inference for latency: the paths (eager, compile, aoti, cuda-graph) and concurrent inference.

Twin of cpp/infer.cpp. docs/twins.md ("Modes") says what each path is; a path a language or device cannot
run is listed in the results' `unavailable` with the reason, never silently dropped. Autocast runs without
its cache of cast weights throughout (runtime.autocast says why).
"""

import os
import threading
import time
from dataclasses import dataclass

import torch

from bench import process
from bench.data import cache_dir
from bench.results import summarize_ms
from bench.runtime import (
    as_input_layout,
    autocast,
    first_line,
    now_ns,
    peak_memory_bytes,
    print_detail,
    reset_peak_memory,
    synchronize,
)
from bench.trace import INFER, INFER_WARMUP, Trace, scope
from bench.vocab import aoti_package_name

CUDA_GRAPH_WARMUP = 3  # forwards on a side stream before the capture
CONCURRENCY_WARMUP = 5  # untimed requests per thread before the barrier


class InferenceError(Exception):
    """An inference path cannot be prepared, or a concurrent worker failed: the run stops (exit 1)."""


@dataclass(frozen=True)
class InferOptions:
    """What inference needs of the command line (C++: struct InferOptions)."""

    model: str
    precision: str
    channels_last: bool
    inference_paths: list
    latency_batch_sizes: list
    latency_iters: int
    latency_warmup: int
    concurrency: list
    concurrency_iters: int
    aoti_dir: str | None


def use_persistent_inductor_cache():
    """Inductor's compiled code goes under our cache, not /tmp, so later runs reuse it (a
    TORCHINDUCTOR_CACHE_DIR set by the user wins)."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "inductor"))


def aoti_package_path(options, batch_size):
    return os.path.join(options.aoti_dir, aoti_package_name(options.model, options.precision, options.channels_last,
                                                            batch_size))


def check_aoti_packages(options, device):
    """Every AOTInductor package the latency run will load is in --aoti-dir: checked before training, so
    that a missing one does not end a long run at its end."""
    if "aoti" not in options.inference_paths or not options.latency_iters:
        return
    for bs in options.latency_batch_sizes:
        path = aoti_package_path(options, bs)
        if not os.path.isfile(path):
            layout = " --channels-last" if options.channels_last else ""
            sizes = ",".join(map(str, options.latency_batch_sizes))
            raise InferenceError(f"AOTInductor package {path} not found: build it with "
                                 f"`python -m suite.experiments.aoti package --model {options.model} --device "
                                 f"{device.type} --precision {options.precision}{layout} --batch-sizes {sizes}` and "
                                 "pass the folder it prints as --aoti-dir")


def latency_input(test_x, batch_size, channels_last):
    """The first `batch_size` normalized test images (repeated when there are fewer), in the run's layout."""
    idx = torch.arange(batch_size, device=test_x.device) % test_x.shape[0]
    return as_input_layout(test_x[idx], channels_last)


def time_samples(fn, x, iters, warmup, device, trace=None, label=""):
    """`warmup` untimed calls, then `iters` samples of one call each, in ms (the clock read syncs the device).
    With a `trace`, each call is a scope named with `label` (a sample's also with the autograd mode it runs in),
    entered and left outside the clock reads: the traced pass runs this same code (trace_inference)."""
    warmup_scope, sample_scope = (f"{INFER_WARMUP} {label}", f"{INFER} {label} mode={process.autograd_mode()}") \
        if trace is not None else (None, None)
    for _ in range(warmup):
        with scope(warmup_scope, trace):
            fn(x)
    samples = []
    for _ in range(iters):
        with scope(sample_scope, trace):
            t0 = now_ns(device)
            fn(x)
            t1 = now_ns(device)
        samples.append((t1 - t0) / 1e6)
    return samples


def unavailable_reason(path, device):
    """Why this language cannot run `path` on `device`, or None."""
    if path == "cuda-graph" and device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    return None


def load_aoti(model, batch_size, options):
    """The AOTInductor package for this configuration from --aoti-dir, given the run's own weights."""
    path = aoti_package_path(options, batch_size)
    from torch._inductor import aoti_load_package  # slow to import: only for this path

    runner = aoti_load_package(path)
    weights = model.state_dict()
    missing = [fqn for fqn in runner.get_constant_fqns() if fqn not in weights]
    if missing:
        raise InferenceError(f"AOTInductor package {path} needs {missing[0]}, which {options.model} does not have")
    runner.load_constants({fqn: weights[fqn] for fqn in runner.get_constant_fqns()}, check_full_update=True)
    return runner


def capture_cuda_graph(model, x, device, precision):
    """One capture of model(static_x) after warm-up forwards on a side stream; calling the result replays
    it and returns the static output (the input is always static_x, a copy of x)."""
    static_x = x.clone()
    # No cache of cast weights while capturing (torch.cuda.make_graphed_callables refuses it too): casts
    # cached outside the graph would be freed when the autocast region ends.
    with torch.inference_mode(), autocast(device, precision, cache_enabled=False):
        synchronize(device)
        with torch.cuda.stream(torch.cuda.Stream(device)):
            for _ in range(CUDA_GRAPH_WARMUP):
                model(static_x)
        synchronize(device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = model(static_x)

    def replay(_x):
        graph.replay()
        return static_out
    return replay


def prepare_path(path, model, x, device, options, compiled):
    """The callable that runs `path` on inputs like x: built, compiled or captured here, before any timing.
    `compiled` is the torch.compile wrapper of the model (compile path only; C++ has none)."""
    if path == "eager":
        return model
    if path == "compile":
        with torch.inference_mode(), autocast(device, options.precision, cache_enabled=False):
            compiled(x)  # compiles for this batch size, under the contexts the samples run in
        return compiled
    if path == "aoti":
        return load_aoti(model, x.shape[0], options)
    return capture_cuda_graph(model, x, device, options.precision)


def prepare_path_or_fail(path, model, x, device, options, compiled):
    """prepare_path, with any failure as the run's one error line."""
    try:
        return prepare_path(path, model, x, device, options, compiled)
    except Exception as err:  # export, Inductor and CUDA raise many types
        print_detail(err)
        raise InferenceError(f"cannot prepare inference path {path} at batch size {x.shape[0]}: "
                             f"{first_line(err)}") from err


def measure_latency(model, test_x, device, options, outputs=None):
    """Per-sample forward latency for each requested path and batch size.

    Returns (latency entries, unavailable entries). With `outputs` (a dict), each path's float32 output on
    its latency input is added as "<path>.bs<B>" (--dump-logits).
    """
    model.eval()
    latency, unavailable = [], []
    for path in options.inference_paths:
        reason = unavailable_reason(path, device)
        if reason:
            unavailable.append({"feature": f"inference path {path}", "reason": reason})
            continue
        compiled = None
        if path == "compile":
            use_persistent_inductor_cache()
            compiled = torch.compile(model, dynamic=False)  # one specialization per batch size
        for bs in options.latency_batch_sizes:
            x = latency_input(test_x, bs, options.channels_last)
            fn = prepare_path_or_fail(path, model, x, device, options, compiled)
            reset_peak_memory(device)  # this path's samples only: compiling, packaging, capturing excluded
            with torch.inference_mode(), autocast(device, options.precision, cache_enabled=False):
                with process.window("latency", f"latency {path} bs={bs}"):
                    samples = time_samples(fn, x, options.latency_iters, options.latency_warmup, device)
                peak = peak_memory_bytes(device)
                if outputs is not None:
                    outputs[f"{path}.bs{bs}"] = fn(x).float().clone()  # clone: a graph's output is reused
            latency.append({"path": path, "batch_size": bs, "samples_ms": samples, **summarize_ms(samples),
                            "peak_memory_bytes": peak})
    return latency, unavailable


def trace_inference(model, test_x, device, options, samples, path):
    """For each inference path both languages have (not compile: C++ has none) and each latency batch size, the
    latency's own warm-up and `samples` untimed samples, run as measure_latency runs them (time_samples, in its
    contexts and window), each call in a scope, recorded into the Chrome trace `path`: what one inference sample
    runs, op by op, in which autograd mode, after how many warm-up calls."""
    trace = Trace(device, path)
    model.eval()
    for p in options.inference_paths:
        if p == "compile" or unavailable_reason(p, device):
            continue
        for bs in options.latency_batch_sizes:
            x = latency_input(test_x, bs, options.channels_last)
            fn = prepare_path_or_fail(p, model, x, device, options, None)
            with torch.inference_mode(), autocast(device, options.precision, cache_enabled=False):
                with process.window("latency", f"traced {p} bs={bs}"):
                    time_samples(fn, x, samples, options.latency_warmup, device, trace, f"bs={bs} path={p}")
    trace.stop()


def request_worker(model, x, device, precision, iters, barrier, samples, errors):
    """One request thread: warm-up requests, the barrier, then `iters` timed batch-1 requests into `samples`.
    A failure goes to `errors` and breaks the barrier, which releases the threads waiting for this one."""
    try:
        stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        # Inference mode, autocast and the current stream are thread-local: each thread enters its own.
        with (torch.inference_mode(), autocast(device, precision, cache_enabled=False),
              torch.cuda.stream(stream)):  # stream None: a no-op
            process.worker_thread(f"concurrency {barrier.parties}")
            for _ in range(CONCURRENCY_WARMUP):
                model(x)
            if stream is not None:
                stream.synchronize()
            barrier.wait()
            for _ in range(iters):
                t0 = time.perf_counter_ns()
                model(x)
                if stream is not None:
                    stream.synchronize()
                samples.append((time.perf_counter_ns() - t0) / 1e6)
    except threading.BrokenBarrierError:
        pass  # another thread failed and broke the barrier; its error is the one reported
    except Exception as err:
        errors.append(err)
        barrier.abort()


def concurrent_requests(model, x, device, threads, iters, precision):
    """`threads` threads send `iters` timed batch-1 requests each to the shared model: one concurrency entry."""
    samples = [[] for _ in range(threads)]
    errors, start = [], []
    # The barrier's action runs once all threads have arrived, before any is released: the start time.
    barrier = threading.Barrier(threads, action=lambda: start.append(time.perf_counter_ns()))
    synchronize(device)  # the shared input is ready before other streams read it
    workers = [threading.Thread(target=request_worker, args=(model, x, device, precision, iters, barrier, samples[k],
                                                             errors), name=f"bench-request-{k}")
               for k in range(threads)]
    with process.window("concurrency", f"concurrency {threads}"):
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        end = now_ns(device)  # device synchronized, then read
    if errors:
        raise InferenceError(f"concurrent inference with {threads} threads failed in a worker thread: "
                             f"{first_line(errors[0])}")
    all_samples = [s for per_thread in samples for s in per_thread]
    seconds = (end - start[0]) / 1e9
    return {"threads": threads, "requests": len(all_samples), "seconds": seconds,
            "images_per_second": len(all_samples) / seconds, "samples_ms": all_samples, **summarize_ms(all_samples)}


def measure_concurrency(model, test_x, device, options):
    """Batch-1 inference from N threads sharing the eval-mode model, for each N in options.concurrency.

    On CPU the intra-op pool is set to one thread for the measurement (and restored after), so the threads
    compare the interpreters, not the pool.
    """
    model.eval()
    x = latency_input(test_x, 1, options.channels_last)
    previous_threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        return [concurrent_requests(model, x, device, n, options.concurrency_iters, options.precision)
                for n in options.concurrency]
    finally:
        torch.set_num_threads(previous_threads)
