"""AOTInductor packages of the CIFAR ResNet: built once per configuration, cached, loaded by both trainers.

    python -m suite.aoti package --model resnet18 --batch-size 1 --device cpu --precision fp32 [--channels-last]

prints the path of the package (.pt2), building it on first use. The weights inside do not matter: each
trainer loads the package and gives it the run's own weights with load_constants. bench/infer.py calls
package_path() in-process; cpp/infer.cpp runs this module (docs/twins.md, "Modes", inference paths).
"""

import argparse
import fcntl
import glob
import os
import shutil
import subprocess
import sys
import time

import torch

from bench import model as M
from bench.data import cache_dir

PROG = "suite.aoti"
PRECISIONS = ("fp32", "bf16")


class AotiError(Exception):
    """A package cannot be built."""


class AutocastResNet(M.ResNet):
    """The ResNet with its forward under bf16 autocast, so that the export records the casts the eager bf16
    path makes. A subclass, not a wrapper: the constants keep the ResNet's names, so the run's state dict
    fits the package as it is."""

    def __init__(self, num_blocks, device_type):
        super().__init__(num_blocks)
        self.device_type = device_type

    def forward(self, x):
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return super().forward(x)


def use_persistent_inductor_cache():
    """Inductor's compiled code goes under our cache, not /tmp, so later runs reuse it (a
    TORCHINDUCTOR_CACHE_DIR set by the user wins)."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "inductor"))


def device_tag(device):
    """The device a package's kernels were compiled for: CUDA kernels are built for one architecture."""
    if device.type != "cuda":
        return device.type
    major, minor = torch.cuda.get_device_capability(device)
    return f"cuda-sm{major}{minor}"


def package_name(model_name, batch_size, device, precision, channels_last):
    layout = "channels_last" if channels_last else "contiguous"
    return f"{model_name}-bs{batch_size}-{device_tag(device)}-{precision}-{layout}-torch{torch.__version__}.pt2"


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
    if model_name not in M.STAGES:
        raise AotiError(f"unknown model {model_name!r} (choose from {', '.join(M.STAGES)})")
    model = M.make_model(model_name) if precision == "fp32" else AutocastResNet(M.STAGES[model_name], device.type)
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
    except Exception as err:  # export and inductor raise many types; the caller gets one line
        lines = str(err).strip().splitlines()
        raise AotiError(f"cannot build the AOTInductor package {path.name}: {type(err).__name__}: "
                        f"{lines[0] if lines else ''}") from err
    finally:
        tmp.unlink(missing_ok=True)


def package_path(model_name, batch_size, device, precision, channels_last):
    """The cached package for this configuration, built on first use. A file lock makes concurrent
    processes (pytest-xdist workers, the two trainers) wait for one build instead of building twice."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise AotiError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AotiError("a CUDA package was requested but CUDA is not available")
    path = cache_dir() / "aoti" / package_name(model_name, batch_size, device, precision, channels_last)
    if path.exists():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not path.exists():  # another process may have built it while we waited
                use_persistent_inductor_cache()
                print(f"{PROG}: building {path.name} (first use)", file=sys.stderr, flush=True)
                t0 = time.perf_counter()
                build_package(path, model_name, batch_size, device, precision, channels_last)
                print(f"{PROG}: built {path.name} in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    except OSError as err:
        raise AotiError(f"cannot use the package cache {path.parent}: {err.strerror or err}") from None
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("package", help="print the package path for a configuration, building it on first use")
    p.add_argument("--model", required=True, choices=list(M.STAGES))
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--device", required=True, choices=["cpu", "cuda"])
    p.add_argument("--precision", default="fp32", choices=list(PRECISIONS))
    p.add_argument("--channels-last", action="store_true")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    try:
        print(package_path(args.model, args.batch_size, args.device, args.precision, args.channels_last))
    except AotiError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
