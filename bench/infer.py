"""Inference for latency: the paths (eager, compile, aoti, cuda-graph) and concurrent inference.

Twin of cpp/infer.cpp. docs/twins.md ("Modes") says what each path is; a path a language or device cannot
run is listed in the results' `unavailable` with the reason, never silently dropped.
"""

import torch

from bench.results import summarize_ms


def latency_input(test_x, batch_size, channels_last):
    """The first `batch_size` normalized test images (repeated when there are fewer), in the run's layout."""
    x = test_x[torch.arange(batch_size, device=test_x.device) % test_x.shape[0]]
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def time_samples(fn, x, iters, warmup, clock):
    """`warmup` untimed calls, then `iters` samples of one call each, in ms; `clock` syncs then reads."""
    for _ in range(warmup):
        fn(x)
    samples = []
    for _ in range(iters):
        t0 = clock()
        fn(x)
        samples.append((clock() - t0) / 1e6)
    return samples


def measure_latency(model, test_x, device, args, clock, autocast):
    """Per-sample forward latency for each requested path and batch size.

    Returns (latency entries, unavailable entries). `clock()` synchronizes the device and reads the
    monotonic clock in ns; `autocast()` is the run's precision context.
    """
    model.eval()
    latency, unavailable = [], []
    for path in args.inference_paths:
        if path != "eager":
            unavailable.append({"feature": f"inference path {path}", "reason": "not implemented yet"})
            continue
        for bs in args.latency_batch_sizes:
            x = latency_input(test_x, bs, args.channels_last)
            with torch.inference_mode(), autocast():
                samples = time_samples(model, x, args.latency_iters, args.latency_warmup, clock)
            latency.append({"path": path, "batch_size": bs, "samples_ms": samples, **summarize_ms(samples)})
    return latency, unavailable


def measure_concurrency(model, test_x, device, args, clock, autocast):
    raise NotImplementedError("concurrent inference: in progress")
