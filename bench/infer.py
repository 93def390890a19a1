"""Inference for latency: the paths (eager, compile, aoti, cuda-graph) and concurrent inference.

Twin of cpp/infer.cpp. docs/twins.md ("Modes") says what each path is; a path a language or device cannot
run is listed in the results' `unavailable` with the reason, never silently dropped.
"""

import threading
import time

import torch

from bench.results import summarize_ms
from bench.runtime import autocast, now_ns, peak_memory_bytes, reset_peak_memory, synchronize
from suite import aoti as A

CUDA_GRAPH_WARMUP = 3  # forwards on a side stream before the capture
CONCURRENCY_WARMUP = 5  # untimed requests per thread before the barrier


class InferenceError(Exception):
    """An inference path cannot be prepared, or a concurrent worker failed: the run stops (exit 1)."""


def first_line(err):
    """The first line of an exception's message (torch's can carry more), or its type when it has none."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def latency_input(test_x, batch_size, channels_last):
    """The first `batch_size` normalized test images (repeated when there are fewer), in the run's layout."""
    x = test_x[torch.arange(batch_size, device=test_x.device) % test_x.shape[0]]
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def time_samples(fn, x, iters, warmup, device):
    """`warmup` untimed calls, then `iters` samples of one call each, in ms (the clock read syncs the device)."""
    for _ in range(warmup):
        fn(x)
    samples = []
    for _ in range(iters):
        t0 = now_ns(device)
        fn(x)
        samples.append((now_ns(device) - t0) / 1e6)
    return samples


def unavailable_reason(path, device):
    """Why this language cannot run `path` on `device`, or None."""
    if path == "cuda-graph" and device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    return None


def load_aoti(model, batch_size, device, args):
    """The cached AOTInductor package for this configuration (suite.aoti), holding the run's own weights."""
    path = A.package_path(args.model, batch_size, device, args.precision, args.channels_last)
    from torch._inductor import aoti_load_package  # slow to import: only for this path

    runner = aoti_load_package(str(path))
    weights = model.state_dict()
    missing = [fqn for fqn in runner.get_constant_fqns() if fqn not in weights]
    if missing:
        raise InferenceError(f"AOTInductor package {path} needs {missing[0]}, which {args.model} does not have")
    runner.load_constants({fqn: weights[fqn] for fqn in runner.get_constant_fqns()}, check_full_update=True)
    return runner


def capture_cuda_graph(model, x, device, precision):
    """One capture of model(static_x) after warm-up forwards on a side stream; calling the result replays
    it and returns the static output (the input is always static_x, a copy of x)."""
    static_x = x.clone()
    # Autocast's cache of cast weights must be off while capturing (torch.cuda.make_graphed_callables
    # refuses it too): casts cached outside the graph would be freed when the autocast region ends.
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


def prepare_path(path, model, x, device, args, compiled):
    """The callable that runs `path` on inputs like x: built, compiled or captured here, before any timing.
    `compiled` is the torch.compile wrapper of the model (compile path only; C++ has none)."""
    if path == "eager":
        return model
    if path == "compile":
        with torch.inference_mode(), autocast(device, args.precision, cache_enabled=False):
            compiled(x)  # compiles for this batch size, under the contexts the samples run in
        return compiled
    if path == "aoti":
        return load_aoti(model, x.shape[0], device, args)
    return capture_cuda_graph(model, x, device, args.precision)


def measure_latency(model, test_x, device, args, outputs=None):
    """Per-sample forward latency for each requested path and batch size.

    Returns (latency entries, unavailable entries). With `outputs` (a dict), each path's float32 output on
    its latency input is added as "<path>.bs<B>" (--dump-logits).
    """
    model.eval()
    latency, unavailable = [], []
    for path in args.inference_paths:
        reason = unavailable_reason(path, device)
        if reason:
            unavailable.append({"feature": f"inference path {path}", "reason": reason})
            continue
        compiled = None
        if path == "compile":
            A.use_persistent_inductor_cache()
            compiled = torch.compile(model, dynamic=False)  # one specialization per batch size
        for bs in args.latency_batch_sizes:
            x = latency_input(test_x, bs, args.channels_last)
            try:
                fn = prepare_path(path, model, x, device, args, compiled)
            except Exception as err:  # export, Inductor and CUDA raise many types: the run stops with one line
                raise InferenceError(f"cannot prepare inference path {path} at batch size {bs}: "
                                     f"{first_line(err)}") from err
            reset_peak_memory(device)  # this path's samples only: compiling, packaging, capturing excluded
            with torch.inference_mode(), autocast(device, args.precision, cache_enabled=False):
                samples = time_samples(fn, x, args.latency_iters, args.latency_warmup, device)
                peak = peak_memory_bytes(device)
                if outputs is not None:
                    outputs[f"{path}.bs{bs}"] = fn(x).float().clone()  # clone: a graph's output is reused
            latency.append({"path": path, "batch_size": bs, "samples_ms": samples, **summarize_ms(samples),
                            "peak_memory_bytes": peak})
    return latency, unavailable


def concurrent_requests(model, x, device, threads, iters, precision):
    """`threads` threads send `iters` timed batch-1 requests each to the shared model: one concurrency entry."""
    samples = [[] for _ in range(threads)]
    errors = []
    start = []
    # The barrier's action runs once all threads have arrived, before any is released: the start time.
    barrier = threading.Barrier(threads, action=lambda: start.append(time.perf_counter_ns()))

    def worker(k):
        try:
            stream = torch.cuda.Stream(device) if device.type == "cuda" else None
            # Inference mode, autocast and the current stream are thread-local: each thread enters its own.
            with (torch.inference_mode(), autocast(device, precision, cache_enabled=False),
                  torch.cuda.stream(stream)):  # stream None: a no-op
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
                    samples[k].append((time.perf_counter_ns() - t0) / 1e6)
        except threading.BrokenBarrierError:
            pass  # another thread failed and broke the barrier; its error is the one reported
        except Exception as err:
            errors.append(err)
            barrier.abort()  # release the threads waiting for this one

    synchronize(device)  # the shared input is ready before other streams read it
    workers = [threading.Thread(target=worker, args=(k,), name=f"bench-request-{k}") for k in range(threads)]
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


def measure_concurrency(model, test_x, device, args):
    """Batch-1 inference from N threads sharing the eval-mode model, for each N in args.concurrency.

    On CPU the intra-op pool is set to one thread for the measurement (and restored after), so the threads
    compare the interpreters, not the pool.
    """
    model.eval()
    x = latency_input(test_x, 1, args.channels_last)
    previous_threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        return [concurrent_requests(model, x, device, n, args.concurrency_iters, args.precision)
                for n in args.concurrency]
    finally:
        torch.set_num_threads(previous_threads)
