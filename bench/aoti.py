"""AOTInductor packages of the CIFAR ResNet: built once per configuration, cached, loaded by both trainers.

    python -m bench.aoti package --model resnet18 --batch-size 1 --device cpu --precision fp32 [--channels-last]

prints the path of the package (.pt2), building it on first use. The weights inside do not matter: each
trainer loads the package and gives it the run's own weights with load_constants. bench/infer.py calls
package_path() in-process; cpp/infer.cpp runs this module (docs/twins.md, "Modes", inference paths).
"""

import argparse
import fcntl
import os
import sys
import time

import torch

from bench import model as M
from bench.data import cache_dir

PROG = "bench.aoti"
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
