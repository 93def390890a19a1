"""Reading the trainers' Chrome traces (--trace-steps): the steps and the aten ops each runs, host syncs inside
them, the epoch window's marks, and where a step's time goes. Both languages record with the same profiler
(Kineto), so one reader serves both.

    python -m suite.traces TRACE.json...      # per trace: steps, and per step wall / in ops / between ops

Events are the trace's complete events ("ph": "X"), in integer ns (Kineto writes µs with three decimals: exact
comparisons, no float sums). A scope is a `user_annotation` event named as in
bench/vocab.py (TRACE_STEP ...). The trainer's threads are the thread of its step scopes and the autograd
engine's threads (backward on CUDA runs on a device thread); other threads (the idiomatic pipeline's C++ workers)
are not the step's.
"""

import argparse
import gzip
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.vocab import TRACE_EPOCH_CLOCK, TRACE_EVALUATE, TRACE_INFER, TRACE_STEP

PROG = "suite.traces"
# What waits for the device inside a step: an op that copies a device scalar to the host, and, on CUDA, the
# runtime calls that block the host until work finishes.
SYNC_OPS = ("aten::item", "aten::_local_scalar_dense")
SYNC_RUNTIME_CALLS = ("cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize", "cudaMemcpy")
DEVICE_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")
AUTOGRAD_THREAD_MARK = "autograd::engine::evaluate_function"
# The draws that open an epoch of the matched pipeline (bench/data.py draw_epoch_augmentation): the shuffle first.
FIRST_DRAW_OP = "aten::randperm"


class TraceError(Exception):
    """A file that is not a trace the trainers wrote (unreadable, no events, no steps)."""


@dataclass(frozen=True)
class Event:
    name: str
    cat: str
    tid: object
    ts: int  # ns
    dur: int

    @property
    def end(self):
        return self.ts + self.dur

    def within(self, window):
        return window.ts <= self.ts and self.end <= window.end


def load(path):
    """The trace's complete events, in time order (a parent before the children it encloses); a .gz file is read
    as the gzip of the trace (how committed traces are kept)."""
    try:
        path = Path(path)
        doc = json.loads(gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_text())
    except (OSError, ValueError) as err:
        raise TraceError(f"cannot read trace {path}: {err}") from None
    raw = doc.get("traceEvents") if isinstance(doc, dict) else None
    if not raw:
        raise TraceError(f"{path} has no traceEvents: not a Chrome trace")
    events = [(i, Event(e["name"], e.get("cat", ""), e.get("tid"), round(float(e["ts"]) * 1000),
                        round(float(e.get("dur", 0)) * 1000)))
              for i, e in enumerate(raw) if e.get("ph") == "X" and "ts" in e]
    # A parent before its children; the file's order breaks a tie (the profiler writes a parent first)
    return [e for _, e in sorted(events, key=lambda ie: (ie[1].ts, -ie[1].dur, ie[0]))]


def scopes(events, name):
    """The scopes called `name` (or starting with `name ` : INFER's carry their batch size), in time order."""
    return [e for e in events if e.cat == "user_annotation" and (e.name == name or e.name.startswith(name + " "))]


def steps(events):
    return scopes(events, TRACE_STEP)


def trainer_threads(events):
    return {e.tid for e in steps(events)} | {e.tid for e in events if e.name.startswith(AUTOGRAD_THREAD_MARK)}


def ops_in(events, window, threads):
    """The cpu ops inside `window` on the trainer's threads, in time order, nested ones included."""
    return [e for e in events if e.cat == "cpu_op" and e.tid in threads and e.within(window)]


def dispatched_ops(events, window, threads):
    """What `window` asks of ATen, in order, by name: each aten op that no other aten op encloses, and each node
    the autograd engine runs; what the parity test compares. Ops nested in an aten op are ATen's own
    implementation, which both languages share (C++'s `add_(Scalar)` redispatches to `add_(Tensor)`, which
    Python's binding calls directly: one call in both, one nested op more in C++)."""
    out, stacks = [], {}
    for op in ops_in(events, window, threads):
        stack = stacks.setdefault(op.tid, [])
        while stack and op.ts >= stack[-1].end:
            stack.pop()
        in_aten = any(e.name.startswith("aten::") for e in stack)
        if (op.name.startswith("aten::") and not in_aten) or op.name.startswith(AUTOGRAD_THREAD_MARK):
            out.append(op.name)
        stack.append(op)
    return out


def host_syncs(events, window, threads):
    """What waits for the device inside `window`: sync ops (any device) and blocking CUDA runtime calls."""
    return [e.name for e in events if e.within(window) and e.tid in threads and (
        (e.cat == "cpu_op" and e.name in SYNC_OPS) or (e.cat == "cuda_runtime" and e.name in SYNC_RUNTIME_CALLS))]


def union_length(intervals):
    """The length covered by a set of (start, end) intervals."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def top_level(ops):
    """The ops not enclosed by another op of the same thread (the calls the trainer's code made)."""
    out, open_until = [], {}
    for op in ops:  # time order, parents first
        if op.ts >= open_until.get(op.tid, float("-inf")):
            out.append(op)
            open_until[op.tid] = op.end
    return out


@dataclass(frozen=True)
class StepTime:
    """Where one step's time went, in ns: the step's wall time, the part inside aten ops (the union of the
    trainer threads' outermost ops), the host time between them (interpreter or C++ code, dispatch into the
    ops, the autograd engine between its nodes), and the device's busy time (CUDA kernels and copies)."""

    wall_ns: int
    in_ops_ns: int
    between_ops_ns: int
    device_busy_ns: int | None


def step_times(events):
    threads = trainer_threads(events)
    device = [e for e in events if e.cat in DEVICE_CATEGORIES]
    out = []
    for window in steps(events):
        in_ops = union_length([(op.ts, op.end) for op in top_level(ops_in(events, window, threads))])
        busy = union_length([(max(e.ts, window.ts), min(e.end, window.end)) for e in device
                             if e.end > window.ts and e.ts < window.end])
        out.append(StepTime(window.dur, in_ops, window.dur - in_ops, busy if device else None))
    return out


def breakdown(path):
    """The median step of a training trace, in µs: {wall_us, in_ops_us, between_ops_us, device_busy_us, steps}."""
    times = step_times(load(path))
    if not times:
        raise TraceError(f"{path} has no {TRACE_STEP} scope: not a training trace of --trace-steps")
    med = {f"{field}_us": statistics.median(getattr(t, f"{field}_ns") for t in times) / 1000
           for field in ("wall", "in_ops", "between_ops")}
    busy = [t.device_busy_ns for t in times if t.device_busy_ns is not None]
    return {**med, "device_busy_us": statistics.median(busy) / 1000 if busy else None, "steps": len(times)}


def between(first, second):
    """The window strictly between two events (e.g. the two epoch clock marks): from the first's end to the
    second's start."""
    return Event("between", "", None, first.end, second.ts - first.end)


def epoch_marks(events):
    """(the epoch's clock marks, the first draw, the first step, the last step, the evaluation): the events that
    say which work the epoch's timed window holds. None for what the trace lacks."""
    clocks = scopes(events, TRACE_EPOCH_CLOCK)
    draws = [e for e in events if e.cat == "cpu_op" and e.name == FIRST_DRAW_OP]
    all_steps, evaluation = steps(events), scopes(events, TRACE_EVALUATE)
    return (clocks, draws[0] if draws else None, all_steps[0] if all_steps else None,
            all_steps[-1] if all_steps else None, evaluation[0] if evaluation else None)


def inference_samples(events):
    return scopes(events, TRACE_INFER)


def main(argv=None):
    p = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    p.add_argument("traces", nargs="+", help="train.json files of --trace-steps")
    args = p.parse_args(argv)
    try:
        for path in args.traces:
            b = breakdown(path)
            print(f"{path}: {b['steps']} steps; median step {b['wall_us'] / 1000:.3f} ms: in aten ops "
                  f"{b['in_ops_us'] / 1000:.3f} ms, between ops {b['between_ops_us'] / 1000:.3f} ms "
                  f"({b['between_ops_us'] / b['wall_us']:.1%})"
                  + (f", device busy {b['device_busy_us'] / 1000:.3f} ms" if b["device_busy_us"] is not None else ""))
    except TraceError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
