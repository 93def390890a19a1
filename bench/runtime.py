"""The clock, precision and layout helpers shared by training and inference, and the facts about the run's
machine and torch that the results record. Twin of cpp/runtime.cpp."""

import os
import re
import resource
import sys
import time

import torch

# torch.cuda.synchronize(device) adds a lazy-init check and a device guard (a few µs) around this call; the
# run uses one device, the current one, so the bare call is the same wait at C++'s cost (an empty sample
# within ~1 µs of C++'s). CPU-only builds have no such function (and no CUDA device to wait for).
_cuda_synchronize = getattr(torch._C, "_cuda_synchronize", None) or torch.cuda.synchronize
EMPTY_SAMPLES = 100  # empty samples recorded per run (after EMPTY_SAMPLES_WARMUP untimed ones)
EMPTY_SAMPLES_WARMUP = 10
DETAIL_LINES = 40  # of a long error message (a compiler's output): its cause, not the whole build log


def synchronize(device):
    if device.type == "cuda":
        _cuda_synchronize()


def now_ns(device):
    """The monotonic clock, read only after the device has finished what was queued."""
    synchronize(device)
    return time.perf_counter_ns()


def seconds_since(t0, device):
    return (now_ns(device) - t0) / 1e9


def seconds_since_process_start(device):
    """Seconds from the OS's start of this process to now, after the device's queued work, or None where
    /proc/self/stat cannot be read (not Linux). Both languages read the same two clocks: the kernel's start
    time (field 22 of /proc/self/stat, clock ticks since boot) and CLOCK_BOOTTIME, so the interpreter's or the
    loader's start-up counts, which no clock read inside the program can see."""
    synchronize(device)
    try:
        with open("/proc/self/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 1:].split()  # the name may hold spaces and ')'
        start_ticks = int(fields[22 - 3])  # fields 3 (state) to 22 (starttime)
    except (OSError, ValueError, IndexError):
        return None
    return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")


def peak_rss_bytes():
    """The process's peak resident memory so far, in bytes (getrusage's ru_maxrss: KiB on Linux, the platform
    this project runs on): interpreter or library, data, model, every phase. Worker processes are not in it."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def empty_samples_us(device):
    """What a timed sample costs with no work in it (synchronize, read the clock, twice), in µs: the floor
    under every latency sample, recorded so that the two languages' clocks can be compared."""
    samples = []
    for i in range(EMPTY_SAMPLES_WARMUP + EMPTY_SAMPLES):
        t0 = now_ns(device)
        t1 = now_ns(device)
        if i >= EMPTY_SAMPLES_WARMUP:
            samples.append((t1 - t0) / 1e3)
    return samples


def reset_peak_memory(device):
    """Start a new peak-memory window (CUDA only; the CPU allocator keeps no peak)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device):
    """The most memory allocated on the device since reset_peak_memory, or None on CPU."""
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def precision_label(device, precision):
    """What "fp32" really computes: on CUDA, PyTorch's default lets cuDNN run convolutions in TF32 (and
    cuBLAS matmuls, where allowed), in both languages."""
    if precision != "fp32":
        return f"{precision} autocast"
    if device.type != "cuda" or not torch.backends.cudnn.allow_tf32 or torch.cuda.get_device_capability(device)[0] < 8:
        return "fp32"  # TF32 needs Ampere (sm 8.0) or newer
    matmul = torch.backends.cuda.matmul.allow_tf32
    return "fp32 (TF32 convolutions" + (" and matmuls)" if matmul else ")")


def autocast(device, precision, cache_enabled=True):
    """bf16 autocast on the run's device type; a disabled (no-op) context for fp32.

    Inference passes cache_enabled=False: the cache of cast weights would otherwise make eager skip every cast
    after the first request (which the other paths and a per-request autocast never do), and it is one
    process-wide cache that concurrent threads would share and clear under one another."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16", cache_enabled=cache_enabled)


def as_input_layout(x, channels_last):
    """A model input in the run's memory layout (a no-op when it already is)."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def first_line(err):
    """The first line of an exception's message (torch's can carry more), or its type when it has none."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def print_detail(err):
    """The lines after the first of an exception's message, at most the last DETAIL_LINES, to stderr, before the
    one error line: a compiler's or linker's failure says why only there."""
    for line in str(err).strip().splitlines()[1:][-DETAIL_LINES:]:
        print(f"  | {line}", file=sys.stderr)


def cpu_name():
    """/proc/cpuinfo's model name, or "unknown CPU" (the same text as C++: it keys the report's sections)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def torch_version():
    """MAJOR.MINOR.PATCH, what C++ knows (TORCH_VERSION_*): no local or pre-release suffix."""
    return re.match(r"\d+\.\d+\.\d+", torch.__version__).group()


def run_facts(device, precision):
    """What the results record about torch, the device and the backend's settings."""
    cuda = device.type == "cuda"
    return {
        "torch_version": torch_version(),
        "cuda_version": torch.version.cuda if cuda else None,
        "cudnn_version": torch.backends.cudnn.version() if cuda else None,
        "device": {"type": device.type, "name": torch.cuda.get_device_name(device) if cuda else cpu_name(),
                   "threads": torch.get_num_threads()},
        "backend": {"cudnn_benchmark": torch.backends.cudnn.benchmark,
                    "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                    "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                    "deterministic": torch.are_deterministic_algorithms_enabled()},
        "precision_label": precision_label(device, precision),
    }
