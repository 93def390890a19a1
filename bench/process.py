"""The process's own state, recorded for the results' `process` section: what else, besides the program, can make
the same work run at another speed (docs/confounders.md). Twin of cpp/process.{h,cpp}.

Read at the start of each timed window (cheaply: a few getters of the calling thread) and once at the end (the
loaded libraries and their build ids, torch's configuration, the environment, placement and memory, the build).
suite/process.py compares the two languages' sections; suite/process_allow.toml lists what may differ, and why.

Test hook BENCH_PLANT=NAME,... plants drifts in one process (tests/test_process.py shows that each is caught);
a run with it says so (`test_hooks`).
"""

import contextlib
import ctypes
import gc
import multiprocessing
import os
import platform
import struct
import sys
import sysconfig
import threading
import time

import torch

from bench.flags import UsageError
from bench.vocab import PLANTS, TEST_HOOKS, WATCHED_ENV_PREFIXES

DENORMALS = 1 << 20  # elements computed on denormals: enough to run on every intra-op thread
PT_NOTE, NT_GNU_BUILD_ID = 4, 3
PR_SET_THP_DISABLE, PR_GET_THP_DISABLE = 41, 42
SCHEDULERS = {0: "SCHED_OTHER", 1: "SCHED_FIFO", 2: "SCHED_RR", 3: "SCHED_BATCH", 5: "SCHED_IDLE"}
FP32_PRECISIONS = (("generic", "all"), ("mkldnn", "all"), ("mkldnn", "conv"), ("mkldnn", "rnn"), ("mkldnn", "matmul"),
                   ("cuda", "all"), ("cuda", "conv"), ("cuda", "rnn"), ("cuda", "matmul"))

_libc = ctypes.CDLL(None, use_errno=True)  # the process's global scope: what a symbol lookup finds first


def read_plants():
    """BENCH_PLANT's names; an unknown one is a usage error, as a bad flag is."""
    names = [n for n in os.environ.get("BENCH_PLANT", "").split(",") if n]
    for name in names:
        if name not in PLANTS:
            raise UsageError(f"BENCH_PLANT must be comma-separated names from {{{','.join(PLANTS)}}}, got '{name}'")
    return frozenset(names)


# ---------------------------------------------------------------------------------------------------------
# What the process has loaded
# ---------------------------------------------------------------------------------------------------------

def elf_build_id(path):
    """The GNU build id (.note.gnu.build-id, hex) of an ELF file, read from its PT_NOTE segments; None when it has
    none or is not a 64-bit little-endian ELF file."""
    try:
        with open(path, "rb") as f:
            header = f.read(64)
            if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
                return None
            phoff, = struct.unpack_from("<Q", header, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
            for i in range(phnum):
                f.seek(phoff + i * phentsize)
                p_type, _, p_offset, _, _, p_filesz, _, p_align = struct.unpack("<IIQQQQQQ", f.read(56))
                if p_type != PT_NOTE:
                    continue
                f.seek(p_offset)
                found = note_build_id(f.read(p_filesz), 8 if p_align == 8 else 4)
                if found:
                    return found
    except OSError:
        return None
    return None


def note_build_id(notes, align):
    """The build id among one PT_NOTE segment's notes (name and descriptor padded to `align`), or None."""
    pad = lambda n: (n + align - 1) // align * align  # noqa: E731
    at = 0
    while at + 12 <= len(notes):
        namesz, descsz, kind = struct.unpack_from("<III", notes, at)
        name_at = at + 12
        desc_at = name_at + pad(namesz)
        if kind == NT_GNU_BUILD_ID and notes[name_at:name_at + namesz] == b"GNU\0":
            return notes[desc_at:desc_at + descsz].hex()
        at = desc_at + pad(descsz)
    return None


def program_path():
    return os.path.realpath("/proc/self/exe")


def loaded_libraries():
    """Every ELF object mapped executable into this process but the program itself, by path, with its build id:
    torch, c10, the CUDA libraries, BLAS, OpenMP runtimes, the C library, the interpreter's extension modules.
    The build id is read from the mapped file itself (/proc/self/map_files), which may since have been deleted (an
    AOTInductor package's library) or replaced; from the path where that cannot be opened."""
    program, code, first = program_path(), set(), {}
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith("/"):
                path = fields[5].rstrip("\n")
                if int(fields[2], 16) == 0:
                    first.setdefault(path, fields[0])
                if "x" in fields[1]:
                    code.add(path)
    return [{"path": p, "build_id": (p in first and elf_build_id(f"/proc/self/map_files/{first[p]}")) or
             elf_build_id(p)} for p in sorted(code - {program})]


class DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p), ("dli_sname", ctypes.c_char_p),
                ("dli_saddr", ctypes.c_void_p)]


class LinkMap(ctypes.Structure):
    pass


LinkMap._fields_ = [("l_addr", ctypes.c_size_t), ("l_name", ctypes.c_char_p), ("l_ld", ctypes.c_void_p),
                    ("l_next", ctypes.POINTER(LinkMap)), ("l_prev", ctypes.POINTER(LinkMap))]
RTLD_LAZY, RTLD_NOLOAD, RTLD_DI_LINKMAP = 0x1, 0x4, 2
_libc.dlsym.restype = _libc.dlopen.restype = ctypes.c_void_p  # addresses and handles, not ints


def defining_file(address):
    """The file dladdr names for a code address (resolved), or None."""
    info = DlInfo()
    if not address or not _libc.dladdr(ctypes.c_void_p(address), ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.path.realpath(info.dli_fname.decode())


def malloc_library():
    """The file that defines the malloc this process calls: dladdr of the global scope's `malloc`. A program built
    without PIE (Debian's python3) holds a canonical PLT entry for it, which only jumps on, so where dladdr names
    the program, the first object after it in the link map that defines `malloc` itself."""
    found = defining_file(_libc.dlsym(None, b"malloc"))  # RTLD_DEFAULT
    if found != os.path.realpath("/proc/self/exe"):
        return found
    link = ctypes.POINTER(LinkMap)()
    if _libc.dlinfo(ctypes.c_void_p(_libc.dlopen(None, RTLD_LAZY)), RTLD_DI_LINKMAP, ctypes.byref(link)) != 0:
        return found
    link = link.contents.l_next  # after the program
    while link:
        name = link.contents.l_name
        handle = name and _libc.dlopen(name, RTLD_LAZY | RTLD_NOLOAD)
        if handle:
            here = defining_file(_libc.dlsym(ctypes.c_void_p(handle), b"malloc"))
            _libc.dlclose(ctypes.c_void_p(handle))
            if here == os.path.realpath(name.decode()):
                return here
        link = link.contents.l_next
    return found


# ---------------------------------------------------------------------------------------------------------
# Torch's settings and the calling thread's state
# ---------------------------------------------------------------------------------------------------------

def dtype_name(dtype):
    return str(dtype).removeprefix("torch.")


def autocast_dtype(device_type):
    """The calling thread's autocast dtype on that device type, or None when autocast is off there."""
    return dtype_name(torch.get_autocast_dtype(device_type)) if torch.is_autocast_enabled(device_type) else None


def thread_state():
    """What the calling thread's ATen work depends on: its intra-op threads (OpenMP's count in this thread),
    autograd and inference mode, autocast, and the debugging that slows every op (all thread-local or global)."""
    return {"intra_op_threads": torch.get_num_threads(), "grad_enabled": torch.is_grad_enabled(),
            "inference_mode": torch.is_inference_mode_enabled(), "autocast_cpu": autocast_dtype("cpu"),
            "autocast_cuda": autocast_dtype("cuda"), "anomaly_enabled": torch.is_anomaly_enabled(),
            "profiler_enabled": torch.autograd._profiler_enabled()}


def autograd_mode():
    """The calling thread's autograd mode as a word: inference (inference mode), no_grad, or grad."""
    if torch.is_inference_mode_enabled():
        return "inference"
    return "grad" if torch.is_grad_enabled() else "no_grad"


def denormals_flushed():
    """The fraction of results that flush-to-zero / denormals-are-zero turned into 0, measured by computing on
    denormals on every intra-op thread (no getter sees MXCSR, or what a -ffast-math library set at load)."""
    x = torch.full((DENORMALS,), 1e-40, dtype=torch.float32) * 1.0
    return 1.0 - int(x.count_nonzero()) / DENORMALS


def backend_flags():
    """Every process-wide setting of torch's global context that chooses kernels or numerics (C++: the
    at::globalContext() getters these bind), the CPU capability, the default dtype, and the denormal mode."""
    C = torch._C
    limit = getattr(C, "_cuda_get_cudnn_benchmark_limit", None)  # CUDA builds only, as in C++
    return {
        "deterministic_algorithms": C._get_deterministic_algorithms(),
        "deterministic_warn_only": C._get_deterministic_algorithms_warn_only(),
        "deterministic_fill_uninitialized_memory": C._get_deterministic_fill_uninitialized_memory(),
        "cudnn_enabled": C._get_cudnn_enabled(), "cudnn_deterministic": C._get_cudnn_deterministic(),
        "cudnn_benchmark": C._get_cudnn_benchmark(), "cudnn_benchmark_limit": limit() if limit else None,
        "cudnn_allow_tf32": C._get_cudnn_allow_tf32(), "matmul_allow_tf32": C._get_cublas_allow_tf32(),
        "float32_matmul_precision": C._get_float32_matmul_precision(),
        "fp32_precision": {f"{b}/{op}": C._get_fp32_precision_getter(b, op) for b, op in FP32_PRECISIONS},
        "matmul_fp16_reduced_precision": list(C._get_cublas_allow_fp16_reduced_precision_reduction()),
        "matmul_bf16_reduced_precision": list(C._get_cublas_allow_bf16_reduced_precision_reduction()),
        "matmul_fp16_accumulation": C._get_cublas_allow_fp16_accumulation(),
        "cpu_fp16_reduced_precision": C._get_cpu_allow_fp16_reduced_precision_reduction(),
        "mkldnn_enabled": C._get_mkldnn_enabled(), "mkldnn_deterministic": C._get_mkldnn_deterministic(),
        "nnpack_enabled": C._get_nnpack_enabled(),
        "blas_backend": C._get_blas_preferred_backend().name, "linalg_backend": C._get_linalg_preferred_backend().name,
        "cpu_capability": C._get_cpu_capability(), "default_dtype": dtype_name(torch.get_default_dtype()),
        "anomaly_check_nan": torch.is_anomaly_check_nan_enabled(),
        "denormals_flushed": denormals_flushed(),
    }


def text_lines(text):
    return [line.strip() for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------------------
# Environment, placement, memory, build
# ---------------------------------------------------------------------------------------------------------

def watched_environment():
    """The watched variables as the process sees them now (the C library's environ: what a library's getenv
    reads, setenv by a library included)."""
    environ, found = ctypes.POINTER(ctypes.c_char_p).in_dll(_libc, "environ"), {}
    i = 0
    while environ[i] is not None:
        name, _, value = environ[i].decode(errors="replace").partition("=")
        if name.startswith(WATCHED_ENV_PREFIXES):
            found[name] = value
        i += 1
    return dict(sorted(found.items()))


def cpu_list(cpus):
    """Sorted CPU numbers as the kernel's list format: 0-3,6."""
    out, cpus = [], sorted(cpus)
    for i, c in enumerate(cpus):
        if i == 0 or c != cpus[i - 1] + 1:
            out.append([c, c])
        else:
            out[-1][1] = c
    return ",".join(f"{a}-{b}" if a != b else f"{a}" for a, b in out)


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def status_field(name):
    """A field of /proc/self/status (e.g. Mems_allowed_list), or None."""
    for line in (read_text("/proc/self/status") or "").splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return None


def placement():
    """Where the process may run, and at what priority: CPU affinity, NUMA nodes, cgroup (cpuset), nice, policy."""
    return {"affinity": cpu_list(os.sched_getaffinity(0)), "mems_allowed": status_field("Mems_allowed_list"),
            "cpuset": (read_text("/proc/self/cpuset") or "").strip() or None,
            "cgroup": text_lines(read_text("/proc/self/cgroup") or ""),
            "nice": os.getpriority(os.PRIO_PROCESS, 0),
            "scheduler": SCHEDULERS.get(os.sched_getscheduler(0), str(os.sched_getscheduler(0)))}


def selected(path):
    """The bracketed choice of a kernel setting such as 'always [madvise] never'."""
    text = read_text(path) or ""
    return text[text.find("[") + 1:text.find("]")] if "[" in text else None


def memory():
    """Transparent huge pages (the system's mode and this process's opt-out) and the malloc in use."""
    return {"thp_enabled": selected("/sys/kernel/mm/transparent_hugepage/enabled"),
            "thp_defrag": selected("/sys/kernel/mm/transparent_hugepage/defrag"),
            "thp_disabled_by_process": bool(_libc.prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)),
            "malloc": malloc_library()}


def build_facts():
    """How the code between torch's calls was built (C++: the trainer's own flags, cpp/build_facts.cpp; Python: the
    interpreter's): build type, optimized, NDEBUG, fast-math, and the C++ ABI torch's calls cross."""
    flags = (sysconfig.get_config_var("CFLAGS") or "").split()
    levels = [f for f in flags if f.startswith("-O")]  # the last one counts, as for the compiler
    return {"build_type": "Debug" if hasattr(sys, "gettotalrefcount") else "Release",
            "optimized": bool(levels) and levels[-1] != "-O0",
            "ndebug": "-DNDEBUG" in flags, "fast_math": "-ffast-math" in flags or "-Ofast" in levels,
            "cxx11_abi": torch.compiled_with_cxx11_abi()}


def interpreter():
    """What runs the Python code between torch's calls: its version, the GIL (absent in free-threaded builds) and
    how often it passes between threads (concurrent inference), development mode's extra checks."""
    return {"version": platform.python_version(), "implementation": sys.implementation.name,
            "gil_enabled": getattr(sys, "_is_gil_enabled", lambda: True)(), "switch_interval": sys.getswitchinterval(),
            "dev_mode": sys.flags.dev_mode}


def test_hooks():
    return {name: os.environ[name] for name in TEST_HOOKS if os.environ.get(name)}


# ---------------------------------------------------------------------------------------------------------
# The record: windows, other threads, the garbage collector, planted drifts
# ---------------------------------------------------------------------------------------------------------

def plant_process_drifts(plants):
    """The process-wide drifts BENCH_PLANT asks for, at start-up (the others act in windows and threads)."""
    if "cudnn-deterministic" in plants:
        torch.backends.cudnn.deterministic = True
    if "anomaly" in plants:
        torch.autograd.set_detect_anomaly(True)
    if "interop-threads" in plants:
        torch.set_num_interop_threads(torch.get_num_interop_threads() + 1)
    if "affinity" in plants:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    if "thp" in plants:
        _libc.prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)
    if "switch-interval" in plants:
        sys.setswitchinterval(sys.getswitchinterval() / 5)


class ThreadReporter:
    """Reports the calling thread's state once per process (and per reporter) through a queue: what a DataLoader
    worker process, which runs ATen ops for the trainer, sends back to it (picklable, unlike the record)."""

    def __init__(self, where, queue):
        self.where, self.queue, self.done = where, queue, False

    def __call__(self):
        if not self.done:
            self.done = True
            self.queue.put((self.where, thread_state()))


class ProcessRecord:
    """One run's record: the timed thread's state at each window's start, the other threads that run ATen ops,
    Python's garbage collections inside windows, and (section) what the process is, read at the end."""

    def __init__(self, plants):
        self.plants = plants
        self.windows, self.threads = {}, {}
        self.flags = self.parallel_info = None
        self.open_windows = 0
        self.gc_started_ns, self.gc_collections, self.gc_ns = None, [0, 0, 0], 0
        self.queue = None
        self.lock = threading.Lock()
        gc.callbacks.append(self.on_gc)
        plant_process_drifts(plants)

    def on_gc(self, phase, info):
        if phase == "start":
            self.gc_started_ns = time.perf_counter_ns() if self.open_windows else None
        elif self.gc_started_ns is not None:
            self.gc_collections[info["generation"]] += 1
            self.gc_ns += time.perf_counter_ns() - self.gc_started_ns

    @contextlib.contextmanager
    def window(self, kind, name):
        """A timed window of the calling thread (kind "epoch" or "latency"): its state is read here, before the
        window's first clock read; the global flags and parallel info at the first window."""
        with contextlib.ExitStack() as planted:
            if kind == "latency" and "no-grad" in self.plants:  # no_grad instead of inference mode
                planted.enter_context(torch.inference_mode(False))
                planted.enter_context(torch.no_grad())
            if self.flags is None:
                self.flags = backend_flags()
                self.parallel_info = text_lines(torch.__config__.parallel_info())
            self.windows[name] = thread_state()
            self.open_windows += 1
            try:
                if "gc" in self.plants:
                    gc.collect()  # a full collection inside the timed window
                yield
            finally:
                self.open_windows -= 1

    def worker_thread(self, where):
        """Records the calling thread (one that runs ATen ops besides the timed one: a request thread of concurrent
        inference) under `where`."""
        if "worker-threads" in self.plants and where.startswith("concurrency") and where not in self.threads:
            torch.set_num_threads(torch.get_num_threads() + 1)  # another count in this one worker thread
        with self.lock:
            self.threads.setdefault(where, []).append(thread_state())

    def thread_reporter(self, where):
        """A ThreadReporter for threads of other processes (DataLoader workers) or of this one."""
        if self.queue is None:
            self.queue = multiprocessing.SimpleQueue()
        return ThreadReporter(where, self.queue)

    def gathered_threads(self):
        """Every other thread's state, by where it ran (worker processes' reports included). How many threads
        reported depends on which worker got work first: suite/process.py compares the distinct states."""
        while self.queue is not None and not self.queue.empty():
            where, state = self.queue.get()
            self.threads.setdefault(where, []).append(state)
        return dict(sorted(self.threads.items()))

    def section(self):
        """The results' `process` section (schema: process), read at the end of the run."""
        return {
            "program": program_path(), "libraries": loaded_libraries(),
            "torch_config": text_lines(torch.__config__.show()),
            "parallel_info": self.parallel_info or text_lines(torch.__config__.parallel_info()),
            "flags": self.flags or backend_flags(), "interop_threads": torch.get_num_interop_threads(),
            "windows": self.windows, "threads": self.gathered_threads(),
            "environment": {"watched": list(WATCHED_ENV_PREFIXES), "values": watched_environment()},
            "placement": placement(), "memory": memory(), "build": build_facts(),
            "gc": {"enabled": gc.isenabled(), "thresholds": list(gc.get_threshold()), "frozen": gc.get_freeze_count(),
                   "collections_in_windows": self.gc_collections, "seconds_in_windows": self.gc_ns / 1e9},
            "interpreter": interpreter(), "test_hooks": test_hooks(),
        }


# The run's record (None outside a trainer run: the suite's tools call inference functions without one).
_record = None


def start_record(plants):
    global _record
    _record = ProcessRecord(plants)
    return _record


def window(kind, name):
    return _record.window(kind, name) if _record is not None else contextlib.nullcontext()


def worker_thread(where):
    if _record is not None:
        _record.worker_thread(where)


def thread_reporter(where):
    return _record.thread_reporter(where) if _record is not None else None
