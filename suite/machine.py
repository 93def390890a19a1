"""What a measurement was made on: GPUs, driver, CUDA, cuDNN, torch, torchvision, CPU, threads, platform.

    python -m suite.machine      (the same facts as JSON)

One definition for the suite's pytest-benchmark machine info (suite/plugin/hooks.py) and any session that
records its machine. It asks torch about CUDA: call it from a process that may touch the GPU.
"""

import json
import os
import platform
import subprocess


def gpu_driver():
    """nvidia-smi's driver version, or None (no nvidia-smi, or it failed)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.split("\n")[0] or None


def machine_facts():
    """The facts, as JSON values (the commit is not one: pytest-benchmark's commit_info has it)."""
    import torch
    import torchvision

    from bench.runtime import cpu_name

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {"gpu_names": gpus, "gpu_count": len(gpus), "gpu": gpus[0] if gpus else "none (CPU)",
            "driver": gpu_driver() if gpus else None, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if gpus else None, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "cpu_model": cpu_name(), "cpu_threads": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform()}


if __name__ == "__main__":
    print(json.dumps(machine_facts(), indent=1))
