"""Profiler traces (--trace-steps K, --trace-dir DIR): K training steps and K inference samples per latency batch
size, recorded by PyTorch's profiler (Kineto) into Chrome-trace JSON, and the named scopes that suite/traces.py
finds them by. Twin of cpp/trace.{h,cpp}, which drives the same profiler through LibTorch.

Scopes cost nothing when no trace records: `scope` is then a null context, as RecordFunction is in C++.
"""

import contextlib
import os

from torch.profiler import ProfilerActivity, profile, record_function

from bench.runtime import now_ns, synchronize
from bench.vocab import TRACE_EPOCH_CLOCK, TRACE_EVALUATE, TRACE_INFER, TRACE_INFER_WARMUP, TRACE_STEP

# The scopes' names (bench/vocab.py says what each holds)
STEP, EPOCH_CLOCK, EVALUATE, INFER, INFER_WARMUP = (TRACE_STEP, TRACE_EPOCH_CLOCK, TRACE_EVALUATE, TRACE_INFER,
                                                  TRACE_INFER_WARMUP)


class Trace:
    """The profiler, recording from construction until stop(), which waits for the device (the kernels in flight
    belong in the trace) and writes the Chrome trace once."""

    def __init__(self, device, path):
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        self.device = device
        self.path = str(path)
        self.profiler = profile(activities=activities)
        self.profiler.start()

    def recording(self):
        return self.profiler is not None

    def stop(self):
        if self.profiler is not None:
            profiler, self.profiler = self.profiler, None
            synchronize(self.device)  # torch.profiler does too; said here, as C++ must
            profiler.stop()
            profiler.export_chrome_trace(self.path)
            if not os.path.isfile(self.path):  # the exporter only logs a file it cannot write
                raise RuntimeError(f"the profiler wrote no trace to {self.path}")


def scope(name, trace):
    """A named scope in `trace` while it records; otherwise nothing."""
    return record_function(name) if trace is not None and trace.recording() else contextlib.nullcontext()


def traced_now_ns(device, trace):
    """now_ns(device) inside an EPOCH_CLOCK scope: where an epoch's timed window opens or closes, as the trace
    sees it. One call, so that a clock read cannot move away from its mark."""
    with scope(EPOCH_CLOCK, trace):
        return now_ns(device)
