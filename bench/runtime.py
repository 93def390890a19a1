"""The clock, precision and layout helpers shared by training and inference. Twin of cpp/runtime.cpp."""

import time

import torch


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now_ns(device):
    """The monotonic clock, read only after the device has finished what was queued."""
    synchronize(device)
    return time.perf_counter_ns()


def seconds_since(t0, device):
    return (now_ns(device) - t0) / 1e9


def autocast(device, precision, cache_enabled=True):
    """bf16 autocast on the run's device type; a disabled (no-op) context for fp32.

    Inference passes cache_enabled=False: the cache of cast weights would otherwise make eager skip every cast
    after the first request (which the other paths and a per-request autocast never do), and it is one
    process-wide cache that concurrent threads would share and clear under one another."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16", cache_enabled=cache_enabled)


def as_input_layout(x, channels_last):
    """A model input in the run's memory layout (a no-op when it already is)."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
