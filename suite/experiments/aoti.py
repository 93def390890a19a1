"""AOTInductor packages of the CIFAR ResNet: built once per configuration and cached; both trainers load them.

    python -m suite.experiments.aoti package --model resnet18 --device cpu --precision fp32 [--channels-last]
                                             --batch-sizes 1,8

builds each missing package and prints the folder to pass to either trainer as --aoti-dir. The folder is keyed
by the device the kernels were compiled for and the torch version; its files are named by
bench.vocab.aoti_package_name. The weights inside do not matter: each trainer gives its package the run's own
weights with load_constants (docs/twins.md, "Modes", inference paths). Neither trainer runs this module.
"""

import argparse
import functools
import glob
import os
import shutil
import subprocess
import sys
import time

import torch
from filelock import FileLock

from bench.data import cache_dir
from bench.flags import UsageError, parse_ints
from bench.infer import use_persistent_inductor_cache
from bench.model import ResNet, make_model
from bench.runtime import first_line, print_detail
from bench.vocab import MAX_BATCH, MODELS, PRECISIONS, aoti_package_name

PROG = "suite.experiments.aoti"


class AotiError(Exception):
    """A package cannot be built."""


class AutocastResNet(ResNet):
    """The ResNet with its forward under bf16 autocast, so that the export records the casts the eager bf16
    path makes. A subclass, not a wrapper: the constants keep the ResNet's names, so the run's state dict
    fits the package as it is."""

    def __init__(self, num_blocks, device_type):
        super().__init__(num_blocks)
        self.device_type = device_type

    def forward(self, x):
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return super().forward(x)


def device_tag(device):
    """The device a package's kernels were compiled for: CUDA kernels are built for one architecture."""
    if device.type != "cuda":
        return device.type
    major, minor = torch.cuda.get_device_capability(device)
    return f"cuda-sm{major}{minor}"


# Where NVIDIA's driver puts libcuda (Debian/Ubuntu, Red Hat, NVIDIA's container images, the forward-compat
# package).
DRIVER_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/local/nvidia/lib64", "/usr/local/cuda/compat")


def libcuda_link_dir(candidates):
    """The first folder of `candidates` with an unversioned libcuda.so (what `-lcuda` looks for), or None."""
    for folder in candidates:
        if folder and os.path.isfile(os.path.join(folder, "libcuda.so")):  # follows links: a dangling one is none
            return str(folder)
    return None


def libcuda_candidates():
    """Folders that may hold libcuda.so, best first: the driver's (from the loader's cache, then the usual
    places), then the toolkit's stubs, which are fine to link against (their SONAME is libcuda.so.1: the
    driver's library is what loads at run time). Lazy: the toolkit is looked up only if no driver folder has it."""
    try:
        ldconfig = subprocess.run([shutil.which("ldconfig") or "/sbin/ldconfig", "-p"], capture_output=True,
                                  text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        ldconfig = ""
    # lines like "\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1"; not the 32-bit "(libc6)"
    entries = [line.split(" => ", 1) for line in ldconfig.splitlines() if " => " in line]
    yield from (os.path.dirname(path) for name, path in entries
                if name.strip().startswith("libcuda.so") and "64" in name)
    yield from DRIVER_DIRS
    from torch.utils.cpp_extension import CUDA_HOME  # the toolkit inductor compiles with
    if CUDA_HOME:
        yield os.path.join(CUDA_HOME, "lib64", "stubs")
        yield from sorted(glob.glob(os.path.join(CUDA_HOME, "targets", "*", "lib", "stubs")))


def ensure_libcuda_linkable():
    """A CUDA package's .so links with -lcuda, but GPU hosts often have only the driver's libcuda.so.1 (no
    unversioned libcuda.so, which comes with the driver's development package), and inductor adds the
    toolkit's stubs folder only in some layouts. Put a folder that has libcuda.so first on LIBRARY_PATH, which
    gcc searches for -l, unless one there already has it."""
    library_path = [folder for folder in os.environ.get("LIBRARY_PATH", "").split(os.pathsep) if folder]
    if libcuda_link_dir(library_path):
        return
    folder = libcuda_link_dir(libcuda_candidates())
    if folder:  # none: the link fails and says -lcuda was not found
        os.environ["LIBRARY_PATH"] = os.pathsep.join([folder, *library_path])


def build_package(path, model_name, batch_size, device, precision, channels_last):
    """Export a freshly built eval-mode model for one input shape and compile it into `path`, atomically."""
    model = make_model(model_name) if precision == "fp32" else AutocastResNet(MODELS[model_name], device.type)
    model.to(device).eval()
    x = torch.zeros(batch_size, 3, 32, 32, device=device)
    if channels_last:  # the kernels assume the weights' and the input's strides
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    tmp = path.with_name(f"{path.stem}.tmp.{os.getpid()}.pt2")  # the packager wants a .pt2 name
    try:
        from torch._inductor import aoti_compile_and_package  # slow to import: only when building
        if device.type == "cuda":
            ensure_libcuda_linkable()
        exported = torch.export.export(model, (x,))
        aoti_compile_and_package(exported, package_path=str(tmp))
        os.replace(tmp, path)
    except Exception as err:  # export and inductor raise many types; the caller gets one line, after the rest
        print_detail(err)     # (inductor's CppCompileError has the compiler's command and output there)
        raise AotiError(f"cannot build the AOTInductor package {path.name}: {type(err).__name__}: "
                        f"{first_line(err)}") from err
    finally:
        tmp.unlink(missing_ok=True)


def build_once(path, model_name, batch_size, device, precision, channels_last):
    """Build `path` unless it exists. A file lock makes concurrent processes (pytest-xdist workers) wait for
    one build instead of building twice."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(path.with_name(path.name + ".lock")):
            if path.exists():  # another process built it while we waited
                return
            use_persistent_inductor_cache()
            print(f"{PROG}: building {path} (first use)", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            build_package(path, model_name, batch_size, device, precision, channels_last)
            print(f"{PROG}: built {path.name} in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    except OSError as err:
        raise AotiError(f"cannot use the package cache {path.parent}: {err.strerror or err}") from None


def package_dir(model, device, precision, channels_last, batch_sizes):
    """The folder holding this configuration's package for each batch size (the trainers' --aoti-dir), each
    built on first use: <cache>/aoti/<device tag>-torch<version>/<vocab.aoti_package_name(...)>."""
    device = torch.device(device)
    if model not in MODELS or precision not in PRECISIONS or device.type not in ("cpu", "cuda"):
        raise AotiError(f"no package for model {model!r}, precision {precision!r}, device {device.type!r} "
                        f"(choose from {', '.join(MODELS)}; {', '.join(PRECISIONS)}; cpu, cuda)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AotiError("a CUDA package was requested but CUDA is not available")
    folder = cache_dir() / "aoti" / f"{device_tag(device)}-torch{torch.__version__}"
    for batch_size in batch_sizes:
        path = folder / aoti_package_name(model, precision, channels_last, batch_size)
        if not path.exists():
            build_once(path, model, batch_size, device, precision, channels_last)
    return folder


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("package", help="build the packages of a configuration (first use) and print their folder")
    p.add_argument("--model", required=True, choices=list(MODELS))
    p.add_argument("--device", required=True, choices=["cpu", "cuda"])
    p.add_argument("--precision", default="fp32", choices=list(PRECISIONS))
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--batch-sizes", required=True, help="comma-separated batch sizes (the trainers' latency sizes)",
                   type=functools.partial(parse_ints, "--batch-sizes", low=1, high=MAX_BATCH, allow_empty=False))
    try:
        args = parser.parse_args(argv)
        print(package_dir(args.model, args.device, args.precision, args.channels_last, args.batch_sizes))
    except UsageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except AotiError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
