"""What the pytest suite drives: building the C++ trainer, running either trainer, preparing data.

Kept out of the pytest plugin (suite/plugin/) so tests, tox and the report can share it. The build is also a
command (the GPU session's first stage):

    python -m suite.harness build [--build-dir DIR] [--jobs N]     # prints the executable
"""

import argparse
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from filelock import FileLock

from bench.vocab import FLAGS, MODES, PROGRAMS

PROG = "suite.harness"
ROOT = Path(__file__).resolve().parent.parent
BUILD_TAIL_LINES = 40


class BuildError(Exception):
    """The C++ build failed; the message holds the tail of CMake's or the compiler's output."""


def aoti_package_command(model, device, precision, channels_last, batch_sizes):
    """The command that builds (first use) one configuration's AOTInductor packages and prints their folder."""
    layout = ["--channels-last"] if channels_last else []
    return [sys.executable, "-m", "suite.experiments.aoti", "package", "--model", model, "--device", device,
            "--precision", precision, *layout, "--batch-sizes", ",".join(map(str, batch_sizes))]


def aoti_packages(model, device, precision, channels_last, batch_sizes):
    """The folder of that configuration's packages (a trainer's --aoti-dir), built in a process of its own: the
    suite's long-lived process never compiles nor touches the GPU, so no trainer is timed beside its state."""
    proc = subprocess.run(aoti_package_command(model, device, precision, channels_last, batch_sizes), cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        raise BuildError(f"AOTInductor packages for {model} {precision} could not be built (exit {proc.returncode}): "
                         f"{proc.stderr.strip()[-2000:]}")
    return Path(lines[-1])


def mode_precision_and_layout(mode):
    """(precision, channels_last) of a suite mode (bench.vocab.MODES): what its AOTInductor packages are built for."""
    flags = MODES[mode]
    precision = next(f.default for f in FLAGS if f.name == "--precision")
    if "--precision" in flags:
        precision = flags[flags.index("--precision") + 1]
    return precision, "--channels-last" in flags


def cpp_executable(build_dir):
    return Path(build_dir) / PROGRAMS["cpp"]


def configured_cache(build_dir):
    """{name: value} of the build folder's CMakeCache.txt ({} when it has none)."""
    try:
        lines = (Path(build_dir) / "CMakeCache.txt").read_text(errors="replace").splitlines()
    except OSError:
        return {}
    return {name.split(":", 1)[0]: value for name, _, value in (line.partition("=") for line in lines)
            if ":" in name and not name.startswith(("#", "//"))}


def configure_command(build_dir, source):
    """The CMake configure of `build_dir`, or None when it is already configured for these sources and this
    Python (`cmake --build` re-runs the configure itself when a CMakeLists.txt changes): each pytest-xdist worker
    builds, and a configure imports torch (5-8 s, under the build lock). Ninja when it is there and the folder is
    new (an existing folder keeps its generator); `make` otherwise."""
    cache = configured_cache(build_dir)
    generated = any((Path(build_dir) / name).is_file() for name in ("build.ninja", "Makefile"))
    if generated and cache.get("Python3_EXECUTABLE") == sys.executable and \
            Path(cache.get("CMAKE_HOME_DIRECTORY", "")).resolve() == Path(source).resolve():
        return None
    generator = ["-G", "Ninja"] if not cache and shutil.which("ninja") else []
    return ["cmake", "-S", str(source), "-B", str(build_dir), *generator, f"-DPython3_EXECUTABLE={sys.executable}"]


def build_cpp(build_dir=ROOT / "build", jobs=None, source=ROOT):
    """Configure (first time, or for another Python) and build bench_train incrementally with the running
    Python's torch, from the sources in `source` (this checkout; the interleaved A/B gate builds another
    commit's tree)."""
    build_dir = Path(build_dir).resolve()  # absolute: tests run the executable from other folders
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise BuildError(f"{tool} not found on PATH: install CMake >= 3.18 and a C++20 compiler")
    if not (shutil.which("ninja") or shutil.which("make")):
        raise BuildError("neither ninja nor make found on PATH: install one (CMake generates its build files)")
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(build_dir.parent / f".{build_dir.name}.lock"):  # one build at a time (pytest-xdist workers)
        steps = [configure_command(build_dir, source),
                 ["cmake", "--build", str(build_dir), "-j", str(jobs or os.cpu_count() or 2)]]
        for cmd in filter(None, steps):
            proc = subprocess.run(cmd, cwd=source, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if proc.returncode:
                tail = "\n".join(proc.stdout.splitlines()[-BUILD_TAIL_LINES:])
                raise BuildError(f"C++ build failed ({' '.join(cmd[:2])} exit {proc.returncode}):\n{tail}")
    exe = cpp_executable(build_dir)
    if not exe.is_file():
        raise BuildError(f"the build finished but {exe} is missing")
    return exe


def trainer_command(lang, args, cpp_exe=None):
    """The command line of one trainer; both take the same flags."""
    if lang == "python":
        return [sys.executable, "-m", PROGRAMS["python"], *args]
    if lang == "cpp":
        return [str(cpp_exe), *args]
    raise ValueError(f"unknown language {lang!r}")


# Trainer processes started in this process, by language: the suite prints the count at the end of a session.
TRAINER_STARTS = Counter()
_STARTS_LOCK = threading.Lock()


def count_trainer_starts(lang, n=1):
    """Count `n` trainer processes of `lang` as started (a torchrun job starts one per rank: suite/dist.py)."""
    with _STARTS_LOCK:
        TRAINER_STARTS[lang] += n


def start_trainer(lang, args, cpp_exe=None, env=None, root=ROOT, cwd=None, **popen):
    """Start a trainer (the one place the suite does, but for torchrun's ranks, so that it can count them) and
    return the Popen. `env` adds variables to ours (a value of None removes one); `root` is the source tree whose
    Python trainer runs (this checkout by default) and the working folder unless `cwd` is given; `popen` goes to
    subprocess.Popen."""
    cmd = trainer_command(lang, args, cpp_exe)
    full_env = {k: v for k, v in {**os.environ, "PYTHONPATH": str(root), **(env or {})}.items() if v is not None}
    count_trainer_starts(lang)
    return subprocess.Popen(cmd, cwd=cwd or root, env=full_env, text=True, **popen)


def run_trainer(lang, args, cpp_exe=None, env=None, echo=None, root=ROOT, cwd=None, **popen):
    """Run a trainer to its end; returns the CompletedProcess (stdout/stderr captured as text). `env`, `root`,
    `cwd` and `popen`: as start_trainer's.

    With `echo`, each stderr line (the per-epoch progress, with elapsed time and ETA) is passed on as it
    arrives: to echo(line) when it is a function (the suite's live terminal lines), else to our stderr
    behind the label `echo`.
    """
    with start_trainer(lang, args, cpp_exe, env, root, cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       **popen) as proc:
        if echo is None:
            stdout, stderr = proc.communicate()
            return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        stdout = []
        drain = threading.Thread(target=lambda: stdout.append(proc.stdout.read()), daemon=True)
        drain.start()
        stderr = []
        for line in proc.stderr:
            stderr.append(line)
            if callable(echo):
                echo(line)
            else:
                print(f"[{echo}] {line}", end="", file=sys.stderr, flush=True)
        proc.wait()
        drain.join()
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(stdout), "".join(stderr))


def trainer_starts_line(since=None):
    """'N trainer processes started (python a, cpp b)', counted since the snapshot `since` (a Counter)."""
    counts = TRAINER_STARTS - (since or Counter())
    per_lang = ", ".join(f"{lang} {counts[lang]}" for lang in PROGRAMS)
    return f"{sum(counts.values())} trainer processes started ({per_lang})"


def gpus_for_worker(worker, visible, count):
    """The CUDA_VISIBLE_DEVICES value for xdist worker `worker` (gwN): GPU N mod count of those visible
    (`visible`, the variable's current value, or None for all `count` GPUs); None to leave it as it is."""
    if not worker.startswith("gw"):
        return None
    gpus = [g.strip() for g in visible.split(",") if g.strip()] if visible is not None else \
        [str(i) for i in range(count)]
    return gpus[int(worker[2:]) % len(gpus)] if len(gpus) > 1 else None


def ensure_synthetic(folder, train, test, seed=0):
    """The synthetic dataset, generated once per (train, test, seed) and reused."""
    from bench import prepare

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(folder.parent / f".{folder.name}.lock"):  # one generator per set (pytest-xdist workers)
        if not (folder / prepare.SYNTH_MARKER).exists():
            prepare.synth(folder, train, test, seed)
    return folder


def resolve_commit(rev):
    """The full hash of git revision `rev` in this checkout, or None when git does not know it."""
    proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=ROOT,
                          capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def export_commit(commit, folder):
    """The tree of `commit`, written once into `folder` (git archive: no worktree bookkeeping in .git) and
    reused; returns the folder."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    done = folder / ".exported"
    with FileLock(folder.parent / f".{folder.name}.lock"):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT, capture_output=True)
            if archive.returncode:
                raise BuildError(f"git archive {commit} failed: {archive.stderr.decode(errors='replace').strip()}")
            subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
            done.write_text(commit)
    return folder


def main(argv=None):
    parser = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("build", help="configure (first time) and build the C++ trainer; print its path")
    p.add_argument("--build-dir", default=str(ROOT / "build"), help="C++ build folder (default build/)")
    p.add_argument("--jobs", type=int, default=None, help="parallel compile jobs (default: every core)")
    args = parser.parse_args(argv)
    try:
        print(build_cpp(args.build_dir, args.jobs))
    except BuildError as err:  # the cause first, then the tail of CMake's or the compiler's output
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
