"""The build environment: CMakeLists.txt refuses a CUDA toolkit of another major than torch's, and
suite/experiments/aoti.py finds an unversioned libcuda.so for the link of a CUDA AOTInductor package."""

import os
import subprocess
import sys

import pytest
import torch

from bench.runtime import DETAIL_LINES
from suite import harness as H
from suite.experiments import aoti


def fake_toolkit(root, nvcc_prints):
    """A folder CMakeLists.txt takes for a CUDA toolkit (it has bin/nvcc); `nvcc --version` prints `nvcc_prints`."""
    nvcc = root / "bin" / "nvcc"
    nvcc.parent.mkdir(parents=True)
    nvcc.write_text(f"#!/bin/sh\necho '{nvcc_prints}'\n")
    nvcc.chmod(0o755)
    return root


# Only the configure, which stops at the check before looking for Torch's CMake config: a few seconds.
@pytest.mark.skipif(torch.version.cuda is None, reason="CPU torch: the build looks for no CUDA toolkit")
@pytest.mark.parametrize("readable", [True, False], ids=["other-major", "unreadable"])
def test_cuda_toolkit_of_another_major_is_a_configure_error(tmp_path, readable):
    torch_major = torch.version.cuda.split(".")[0]
    other = "11" if torch_major == "12" else "12"
    nvcc_prints = f"Cuda compilation tools, release {other}.4, V{other}.4.131" if readable else "nvcc: ?"
    toolkit = fake_toolkit(tmp_path / "cuda", nvcc_prints)
    # CUDA_HOME must win: CUDAToolkit_ROOT comes before it, CUDA_PATH and /usr/local/cuda after it.
    env = {**{k: v for k, v in os.environ.items() if k != "CUDAToolkit_ROOT"}, "CUDA_HOME": str(toolkit)}
    proc = subprocess.run(["cmake", "-S", str(H.ROOT), "-B", str(tmp_path / "build"),
                           f"-DPython3_EXECUTABLE={sys.executable}"], env=env, capture_output=True, text=True)
    out = " ".join((proc.stdout + proc.stderr).split())  # CMake wraps the message's lines
    assert proc.returncode != 0, out[-2000:]
    toolkit_is = f"is CUDA {other}.4" if readable else "has a CUDA version that cannot be read"
    assert f"the CUDA toolkit at {toolkit} (from CUDA_HOME) {toolkit_is}" in out, out[-2000:]
    assert f"torch from {sys.executable} is a CUDA {torch.version.cuda} build" in out, out[-2000:]
    assert f"set CUDA_HOME (or CUDAToolkit_ROOT, which comes first) to a CUDA {torch_major}.x toolkit" in out


def test_libcuda_link_dir_is_the_first_folder_with_an_unversioned_libcuda(tmp_path):
    driver_only, dangling, linked, stubs = (tmp_path / name for name in ("driver", "dangling", "linked", "stubs"))
    for folder in (driver_only, dangling, linked, stubs):
        folder.mkdir()
    (driver_only / "libcuda.so.1").write_bytes(b"")  # the driver alone: -lcuda cannot use it
    (dangling / "libcuda.so").symlink_to(dangling / "libcuda.so.1")
    (linked / "libcuda.so.1").write_bytes(b"")
    (linked / "libcuda.so").symlink_to("libcuda.so.1")  # the driver's development package
    (stubs / "libcuda.so").write_bytes(b"")

    assert aoti.libcuda_link_dir([]) is None
    assert aoti.libcuda_link_dir(["", tmp_path / "missing", driver_only, dangling]) is None
    assert aoti.libcuda_link_dir([driver_only, dangling, linked, stubs]) == str(linked)
    assert aoti.libcuda_link_dir([str(stubs), str(linked)]) == str(stubs)


def test_libcuda_folder_goes_first_on_library_path_unless_one_there_has_it(tmp_path, monkeypatch):
    found, listed = tmp_path / "found", tmp_path / "listed"
    for folder in (found, listed):
        folder.mkdir()
    (found / "libcuda.so").write_bytes(b"")
    monkeypatch.setattr(aoti, "libcuda_candidates", lambda: iter([tmp_path / "none", found]))

    monkeypatch.setenv("LIBRARY_PATH", str(listed))
    aoti.ensure_libcuda_linkable()
    assert os.environ["LIBRARY_PATH"] == os.pathsep.join([str(found), str(listed)])
    aoti.ensure_libcuda_linkable()  # already findable: unchanged
    assert os.environ["LIBRARY_PATH"] == os.pathsep.join([str(found), str(listed)])

    monkeypatch.delenv("LIBRARY_PATH")
    aoti.ensure_libcuda_linkable()
    assert os.environ["LIBRARY_PATH"] == str(found)


def test_libcuda_candidates_are_the_driver_folders_then_the_toolkit_stubs(tmp_path, monkeypatch):
    import torch.utils.cpp_extension as cpp_extension
    ldconfig = ("4 libs found in cache `/etc/ld.so.cache'\n"
                "\tlibcudart.so.13 (libc6,x86-64) => /opt/cudart/libcudart.so.13\n"
                "\tlibcuda.so (libc6) => /opt/i386/libcuda.so\n"
                "\tlibcuda.so.1 (libc6,x86-64) => /opt/driver/libcuda.so.1\n"
                "\tlibcuda.so (libc6,x86-64) => /opt/dev/libcuda.so\n")
    monkeypatch.setattr(aoti.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 0, ldconfig, ""))
    (tmp_path / "targets" / "x86_64-linux" / "lib" / "stubs").mkdir(parents=True)
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(tmp_path))
    assert list(aoti.libcuda_candidates()) == [
        "/opt/driver", "/opt/dev", *aoti.DRIVER_DIRS,
        str(tmp_path / "lib64" / "stubs"), str(tmp_path / "targets" / "x86_64-linux" / "lib" / "stubs")]


@pytest.mark.parametrize("worker, visible, count, expected", [
    ("gw0", None, 4, "0"), ("gw5", None, 4, "1"),        # all GPUs visible: worker N gets GPU N mod 4
    ("gw1", "2,3,5", 8, "3"), ("gw3", "2, 3,5", 8, "2"),  # a list already set: split it, never widen it
    ("gw2", "GPU-ab12,GPU-cd34", 0, "GPU-ab12"),          # UUIDs are split the same way
    ("gw1", "3", 8, None), ("gw0", None, 1, None),        # one GPU: nothing to split
    ("master", None, 4, None), ("", "0,1", 2, None),      # not an xdist worker
])
def test_xdist_workers_split_the_visible_gpus(worker, visible, count, expected):
    assert H.gpus_for_worker(worker, visible, count) == expected


def configured(folder, python, source, generated="Makefile"):
    """A build folder as a CMake configure of `source` with `python` leaves it."""
    folder.mkdir(parents=True)
    (folder / "CMakeCache.txt").write_text(f"# comment\nPython3_EXECUTABLE:UNINITIALIZED={python}\n"
                                           f"CMAKE_HOME_DIRECTORY:INTERNAL={source}\n")
    if generated:
        (folder / generated).write_text("")
    return folder


def test_configure_runs_once_per_folder_python_and_sources(tmp_path, monkeypatch):
    """Each pytest-xdist worker builds: a folder this Python configured for these sources is only built (a
    changed CMakeLists.txt re-runs the configure inside the build); another Python, other sources or a configure
    that never generated its build files configure again, with the folder's generator; a new folder gets Ninja
    when it is on PATH."""
    same = configured(tmp_path / "same", sys.executable, H.ROOT)
    assert H.configure_command(same, H.ROOT) is None
    for folder in (configured(tmp_path / "python", "/other/python3", H.ROOT),
                   configured(tmp_path / "source", sys.executable, tmp_path),
                   configured(tmp_path / "broken", sys.executable, H.ROOT, generated=None)):
        cmd = H.configure_command(folder, H.ROOT)
        assert cmd[:5] == ["cmake", "-S", str(H.ROOT), "-B", str(folder)] and "-G" not in cmd, cmd
        assert cmd[-1] == f"-DPython3_EXECUTABLE={sys.executable}"
    monkeypatch.setattr(H.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    assert H.configure_command(tmp_path / "new", H.ROOT)[5:7] == ["-G", "Ninja"]
    monkeypatch.setattr(H.shutil, "which", lambda tool: None if tool == "ninja" else f"/usr/bin/{tool}")
    assert "-G" not in H.configure_command(tmp_path / "new", H.ROOT)


def test_a_failed_package_build_shows_the_compiler_output_before_its_one_line(tmp_path, monkeypatch, capsys):
    """Inductor's CppCompileError says "C++ compile error" on its first line and why (the command, the compiler's
    output) after it: those lines, the last DETAIL_LINES of them, go to stderr before the one-line error."""
    output = [f"/tmp/x.cpp:{i}: error: line {i}" for i in range(100)]

    def fail(*args, **kwargs):
        raise RuntimeError("\n".join(["C++ compile error", "", "Command:", "g++ x.cpp -lcuda", "", "Output:", *output]))
    monkeypatch.setattr(torch.export, "export", fail)
    with pytest.raises(aoti.AotiError) as err:
        aoti.build_package(tmp_path / "p.pt2", "resnet18", 1, torch.device("cpu"), "fp32", False)
    assert str(err.value) == "cannot build the AOTInductor package p.pt2: RuntimeError: C++ compile error"
    shown = capsys.readouterr().err.splitlines()
    assert shown == [f"  | {line}" for line in output[-DETAIL_LINES:]]
    assert not list(tmp_path.iterdir()), "no package, no temporary file"
