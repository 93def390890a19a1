"""One GPU session in priority order under a time budget: (a) the C++ build and the CUDA correctness proofs, (b)
ResNet18's decisive numbers, (c) the same in bf16 + channels-last, (d) the batch-size crossover, (e) the rest
as time allows; at the end of every run of the command, the report of what has finished.

    python -m suite.experiments.gpu_session --out DIR [--budget SECONDS] [--stages a,b] [--force] [--dry-run]
                                            [--real-subset DIR] [--epochs N] [--real-epochs N] [--repeats N]
                                            [--build-dir DIR] [--archive FILE.tar.gz]

Every stage is one or a few module commands (python -m ...) with an estimate of its seconds on the plan's
machine (docs/gpu.md, "Sizing"). With --budget, a stage starts only when its estimate fits in what is left once
the report's time is set aside, a stage that outlives the budget is stopped, and the session ends within the
budget. A finished stage writes DIR/stages/<name>.json (status, exit code, seconds, commands); a rerun skips it
while that marker says so and the stage's products (the executable, the data, the packages, the results) still
exist, so a session cut off goes on where it stopped (--force redoes the selected stages). --dry-run runs the
same stages tiny and on the CPU, under the same budget logic with the CPU's estimates. docs/gpu.md says how to
run it on an offline GPU machine.
"""

import argparse
import importlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.vocab import MODELS, aoti_package_name
from suite import harness as H

PROG = "suite.experiments.gpu_session"
PY = sys.executable
SUITE = ["tests/test_trainers.py", "tests/test_benchmarks.py"]
DEFAULT_SUBSET = H.ROOT / ".data" / "cifar10-real-subset"  # git-ignored: docs/gpu.md says how it gets there
LOG_TAIL_LINES = 25
# The CUDA proofs every number rests on: per mode and language the same aten ops and no host sync in a step
# (the traces), lockstep within its CUDA tolerance, the training peak after the warm-up, weights cross-loaded,
# C++'s pinned-memory loader. -k keeps test_traces.py whole and the CUDA tests (or CUDA parameters) of the rest.
CORRECTNESS = ["tests/test_traces.py", "tests/test_parity.py", "tests/test_pipeline.py", "-k", "test_traces or cuda",
               "-m", "not slow"]
CORRECTNESS_WORKERS = ["-n", "3", "--dist", "loadfile"]  # a file per worker: each file's shared runs in one process
MODULES = ("jsonschema", "pytest", "pytest_benchmark", "xdist", "torchvision", "yaml", "matplotlib", "scipy")
STOP_GRACE_S = 10  # a stopped stage's processes get this long to end (SIGTERM) before SIGKILL
ARCHIVE_S = 5  # set aside with the report's estimate: writing the archive and the summary


@dataclass(frozen=True)
class Plan:
    """What the stages run: the real GPU session, or the tiny CPU dry run of the same stages."""
    device: str
    synth: tuple          # (train, test) images of the synthetic set
    models: tuple         # the first is (b)-(d)'s; the others come in (e)
    modes: tuple          # the matrix's modes: (b) and (c) are the first two, the others come in (e)
    paths: str            # the matrix's inference paths
    latency_sizes: str    # the matrix's latency batch sizes
    compiled_sizes: str   # the compile and AOTI stages' latency batch sizes ("": no such stages)
    epochs: int
    repeats: int          # runs per language of the suite stages, interleaved (suite --repeats)
    real_epochs: int
    real_batch: int
    trace_steps: int      # the traces stages' --trace-steps
    sweep: tuple          # python -m suite.experiments.sweep's options beyond its defaults
    seconds: dict         # stage name -> its estimated seconds on this plan's machine (docs/gpu.md, "Sizing")
    tiny: dict = field(default_factory=dict)  # suite options of every trainer run (a stage's own win)


# One H200, 16 cores: the arithmetic behind each number is docs/gpu.md's "Sizing" table.
GPU = Plan("cuda", (50_000, 10_000), tuple(MODELS), ("default", "bf16-cl", "foreach", "cudnn-benchmark", "idiomatic"),
           "eager,cuda-graph", "1,8,32,128", "1,128", epochs=2, repeats=3, real_epochs=30, real_batch=128,
           trace_steps=5,
           sweep=("--batch-sizes", "8,16,32,64,128", "--repeats", "4", "--steps", "8", "--startup-runs", "2"),
           seconds={"build": 100, "correctness": 100, "data-synthetic": 25,
                    "matrix-resnet18-default": 140, "matrix-resnet18-bf16-cl": 110, "sweep": 350,
                    "matrix-resnet34-default": 200, "matrix-resnet34-bf16-cl": 140, "data-real-subset": 10,
                    "accuracy-real-resnet18": 120, "traces-resnet18": 90, "matrix-resnet18-foreach": 140,
                    "matrix-resnet18-cudnn-benchmark": 150, "matrix-resnet18-idiomatic": 170, "inference-cuda": 300,
                    "aoti-resnet18-fp32": 240, "compiled-resnet18-default": 200, "aoti-resnet18-bf16-cl": 240,
                    "compiled-resnet18-bf16-cl": 200, "accuracy-real-resnet34": 180, "traces-resnet34": 120,
                    "matrix-resnet34-foreach": 200, "matrix-resnet34-cudnn-benchmark": 210,
                    "matrix-resnet34-idiomatic": 230, "report": 30})
# Tiny, on the CPU: with --data and --device cpu the suite picks the full-cpu preset (5000/1000 images), so every
# size is given explicitly. Its estimates are this dry run's own seconds on 2 cores loaded by other work, rounded
# up (docs/gpu.md, "Sizing"); the build's is an incremental one's.
DRY = Plan("cpu", (128, 32), ("resnet18",), ("default", "bf16-cl"), "eager", "1", "", epochs=1, repeats=1,
           real_epochs=1, real_batch=32, trace_steps=2,
           sweep=("--batch-sizes", "1,2", "--repeats", "1", "--steps", "1", "--latency-iters", "2",
                  "--startup-runs", "1"),
           seconds={"build": 30, "correctness": 10, "data-synthetic": 10, "matrix-resnet18-default": 80,
                    "matrix-resnet18-bf16-cl": 140, "sweep": 270, "data-real-subset": 5,
                    "accuracy-real-resnet18": 150, "traces-resnet18": 120, "report": 20},
           tiny={"--train-limit": 64, "--test-limit": 32, "--batch-size": 32, "--latency-iters": 2,
                 "--latency-batch-sizes": 1})


@dataclass
class Stage:
    name: str
    what: str
    # -> the commands to run in order (the first failure ends the stage), or a string saying why it waits.
    commands: object
    needs: tuple = ()     # stages that must have finished ok (a benchmark without a trainer or data measures nothing)
    owns: object = lambda c: []  # noqa: E731  what the stage (re)writes: removed before it runs, no stale files
    products: object = lambda c: []  # noqa: E731  what it leaves: a marker without them does not count as done
    if_failed: str = ""   # said loudly when it fails
    finishing: bool = False  # the report: at the end of every run that finished a stage, its time set aside
    resumes: bool = False    # goes on from what a cut-off run of it left (owns is removed with --force only)


@dataclass
class Outcome:
    status: str
    seconds: float | None = None
    failed: bool = False


# What a stage's outcome says about the session: a failure, or time that ran out (the next run goes on).
FAILED, NO_TIME, WAITING, CUT_OFF = "failed", "no time", "waiting", "cut off at the budget"
LEFT_FOR_LATER = (NO_TIME, WAITING, CUT_OFF)


class Budget:
    """The session's deadline: `seconds` from now, or none."""

    def __init__(self, seconds):
        self.deadline = None if seconds is None else time.monotonic() + seconds

    def left(self):
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()


class OutOfTime(Exception):
    """A stage's command outlived the time it was given: it was stopped."""


class Ctx:
    """The options and the paths every stage builder reads."""

    def __init__(self, args):
        from bench.data import cache_dir, synthetic_dir  # imports torch: only here, not at module import

        self.args, self.plan = args, (DRY if args.dry_run else GPU)
        self.budget = Budget(args.budget)  # its clock starts now
        self.out = Path(args.out).resolve()
        self.build_dir = Path(args.build_dir).resolve()
        self.epochs = args.epochs or self.plan.epochs
        self.real_epochs = args.real_epochs or self.plan.real_epochs
        self.repeats = args.repeats or self.plan.repeats
        self.workers = max(1, min(8, (os.cpu_count() or 2) // 2))  # DataLoader workers
        self.cache = cache_dir()
        train, test = self.plan.synth
        self.synthetic = self.cache / synthetic_dir(train, test, 0)
        # No real images on a CPU test machine: the dry run reads the tiny set unless given a folder.
        self.subset = Path(args.real_subset or (self.synthetic if args.dry_run else DEFAULT_SUBSET)).resolve()
        self.table = {}

    def marker(self, name):
        return self.out / "stages" / f"{name}.json"

    def status(self, name):
        path = self.marker(name)
        return json.loads(path.read_text())["status"] if path.is_file() else None

    def missing_products(self, name):
        return [p for p in self.table[name].products(self) if not p.exists()] if name in self.table else []

    def done(self, name):
        """Finished ok, and what it made is still there."""
        return self.status(name) == "ok" and not self.missing_products(name)


# ---------------------------------------------------------------------------------------------------------
# Stage builders
# ---------------------------------------------------------------------------------------------------------

def correctness(c):
    common = ["--device", c.plan.device, "--build-dir", str(c.build_dir), f"--junitxml={c.out / 'correctness.xml'}"]
    # The dry run collects the same tests (each named one must exist) without running them: no CUDA here.
    how = ["--collect-only", "-q", "-p", "no:xdist"] if c.args.dry_run else CORRECTNESS_WORKERS
    return [[PY, "-m", "pytest", *CORRECTNESS, *how, "--benchmark-disable", *common]]


def subset_check(c):
    sums = ["--sha256sums"] if (c.subset / "SHA256SUMS").is_file() else []
    return [[PY, "-m", "bench.prepare", "verify", str(c.subset), *sums]]


def aoti_products(c, model, precision, channels_last):
    """The packages the aoti stage builds, wherever the cache keys this GPU (its folder names the architecture,
    which only a process that touches the GPU can ask)."""
    import torch

    names = [aoti_package_name(model, precision, channels_last, int(bs)) for bs in c.plan.compiled_sizes.split(",")]
    folders = sorted((c.cache / "aoti").glob(f"cuda-*-torch{torch.__version__}")) or [c.cache / "aoti" / "none"]
    return [folders[-1] / name for name in names]


def suite(c, name, models, data, **opts):
    """One pytest run of the trainer tests and benchmarks (-p no:xdist: pytest-benchmark is off under xdist), with
    its results, benchmark save and JSON named after the stage: the suite names results
    <lang>-<model>-<mode>.json, so stages sharing a folder would overwrite each other."""
    (c.out / "benchmark-json").mkdir(parents=True, exist_ok=True)
    merged = {"--device": c.plan.device, "--data": data, "--models": ",".join(models), "--modes": "default",
              "--workers": c.workers, "--build-dir": c.build_dir, "--epochs": c.epochs, "--repeats": c.repeats,
              "--inference-paths": c.plan.paths, "--latency-batch-sizes": c.plan.latency_sizes, **c.plan.tiny,
              **{f"--{k.replace('_', '-')}": v for k, v in opts.items()},
              "--results-dir": c.out / "results" / name}
    return [[PY, "-m", "pytest", *SUITE, "-p", "no:xdist", "-s", *[str(x) for kv in merged.items() for x in kv],
             f"--benchmark-save={name}", f"--benchmark-storage=file://{c.out / 'benchmarks'}",
             f"--benchmark-json={c.out / 'benchmark-json' / f'{name}.json'}"]]


def suite_stage(name, what, models, data, needs, **opts):
    """A stage of one suite run (suite()), owning and leaving its results."""
    def owns(c):
        return [c.out / "results" / name, c.out / "benchmark-json" / f"{name}.json",
                *(c.out / "benchmarks").glob(f"*/[0-9][0-9][0-9][0-9]_{name}.json")]
    return Stage(name, what, lambda c: suite(c, name, models, data(c), **opts), needs=needs, owns=owns,
                 products=lambda c: [c.out / "results" / name])


def matrix(c, model, mode):
    return suite_stage(f"matrix-{model}-{mode}", f"{model} {mode}, both languages, {c.repeats} interleaved runs "
                       f"each, {c.epochs} epochs, latency {c.plan.paths} at bs {c.plan.latency_sizes}",
                       [model], lambda c: c.synthetic, ("build", "data-synthetic"), modes=mode)


def aoti(c, model, mode):
    """The AOTInductor packages a run of `mode` loads, one per compiled latency batch size: the folder the suite
    passes as --aoti-dir, built here so that the compiled stage times instead of compiling."""
    precision, channels_last = H.mode_precision_and_layout(mode)
    sizes = c.plan.compiled_sizes.split(",")
    return Stage(f"aoti-{model}-{precision}{'-cl' if channels_last else ''}",
                 f"AOTInductor packages {model} {mode} bs {c.plan.compiled_sizes}",
                 lambda c: [H.aoti_package_command(model, c.plan.device, precision, channels_last, sizes)],
                 products=lambda c: aoti_products(c, model, precision, channels_last))


def compiled(c, model, mode, aoti_stage):
    """The compile and AOTI inference paths: their latency, after 100 training steps of one epoch (the matrix
    times training)."""
    return suite_stage(f"compiled-{model}-{mode}", f"{model} {mode}: latency compile,aoti at bs "
                       f"{c.plan.compiled_sizes}", [model], lambda c: c.synthetic,
                       ("build", "data-synthetic", aoti_stage.name), modes=mode, inference_paths="compile,aoti",
                       latency_batch_sizes=c.plan.compiled_sizes, epochs=1, train_limit=100 * 128)


def accuracy(c, model):
    return suite_stage(f"accuracy-real-{model}", f"{model} accuracy on the real subset, both languages, "
                       f"{c.real_epochs} epochs", [model], lambda c: c.subset, ("build", "data-real-subset"),
                       epochs=c.real_epochs, train_limit=0, test_limit=0, batch_size=c.plan.real_batch, lr=0.1,
                       repeats=1)


def traces(c, model):
    return suite_stage(f"traces-{model}", f"{model} profiler traces ({c.plan.trace_steps} steps), both languages",
                       [model], lambda c: c.synthetic, ("build", "data-synthetic"), trace_steps=c.plan.trace_steps,
                       repeats=1)


def sweep(c):
    return Stage("sweep", "the crossover: batch-size sweep of both languages, start-up and footprint",
                 lambda c: [[PY, "-m", "suite.experiments.sweep", "--out", str(c.out / "sweep"), "--device",
                             c.plan.device, "--build-dir", str(c.build_dir), "--resume", *c.plan.sweep]],
                 needs=("build",), owns=lambda c: [c.out / "sweep"],
                 products=lambda c: [c.out / "sweep" / "sweep.json"], resumes=True)


def report(c):
    files = sorted((c.out / "results").glob("*/*.json"))
    if not files:
        return f"no results files under {c.out / 'results'} yet"
    swept = c.out / "sweep" / "sweep.json"  # a sweep cut off has no start-up section yet: the next run ends it
    complete = swept.is_file() and json.loads(swept.read_text()).get("complete")
    return [[PY, "-m", "suite.report", *map(str, files), "--out", str(c.out / "report"),
             *(["--sweep", str(swept)] if complete else [])]]


def aoti_and_compiled(c, model):
    """(e)'s compiled inference: the CUDA paths' parity (test_inference -m gpu), then per configuration of (b) and
    (c) its AOTI packages and the stage that times them beside torch.compile."""
    if not c.plan.compiled_sizes:
        return []
    table = [Stage("inference-cuda", "the compiled paths' parity on CUDA (tests/test_inference.py -m gpu)",
                   lambda c: [[PY, "-m", "pytest", "tests/test_inference.py", "-m", "gpu", "--benchmark-disable",
                               "--device", c.plan.device, "--build-dir", str(c.build_dir),
                               f"--junitxml={c.out / 'inference.xml'}"]], needs=("build",))]
    for mode in c.plan.modes[:2]:
        packages = aoti(c, model, mode)
        table += [packages, compiled(c, model, mode, packages)]
    return table


def stages(c):
    """The table, in priority order."""
    p, first, others = c.plan, c.plan.models[0], c.plan.models[1:]
    decisive, rest = p.modes[:2], p.modes[2:]
    table = [  # (a)
        Stage("build", f"build the C++ trainer in {c.build_dir}",
              lambda c: [[PY, "-m", "suite.harness", "build", "--build-dir", str(c.build_dir)]],
              products=lambda c: [H.cpp_executable(c.build_dir)]),
        Stage("correctness", "the CUDA correctness proofs" + (" (dry run: collected only)" if c.args.dry_run else ""),
              correctness, needs=("build",), products=lambda c: [c.out / "correctness.xml"],
              if_failed="the benchmark stages still run, but they time trainers that FAILED the correctness proofs "
                        "on this device: read logs/correctness.log before trusting any number"),
        Stage("data-synthetic", f"synthetic set {p.synth[0]}/{p.synth[1]} in {c.synthetic}",
              lambda c: [[PY, "-m", "bench.prepare", "synth", str(c.synthetic), "--train", str(p.synth[0]),
                          "--test", str(p.synth[1]), "--seed", "0"]],
              products=lambda c: [c.synthetic / "synthetic.json"]),
    ]
    table += [matrix(c, first, mode) for mode in decisive]  # (b), (c)
    table.append(sweep(c))  # (d)
    table += [matrix(c, m, mode) for m in others for mode in decisive]  # (e)
    table += [Stage("data-real-subset", f"check the real subset {c.subset}", subset_check),
              accuracy(c, first), traces(c, first)]
    table += [matrix(c, first, mode) for mode in rest]
    table += aoti_and_compiled(c, first)
    table += [s for m in others for s in (accuracy(c, m), traces(c, m))]
    table += [matrix(c, m, mode) for m in others for mode in rest]
    table.append(Stage("report", "suite.report of every results file (and the sweep)", report,
                       owns=lambda c: [c.out / "report"], products=lambda c: [c.out / "report" / "report.md"],
                       finishing=True))
    unsized = [st.name for st in table if st.name not in p.seconds]
    if unsized:  # every stage is sized, or the budget cannot decide
        raise KeyError(f"no estimate for stage(s) {', '.join(unsized)}")
    return table


# ---------------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------------

def say(msg):
    print(f"{PROG}: {msg}", flush=True)  # flushed: a cut-off session returns only what reached the pipe


def write_json(path, doc):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    os.replace(tmp, path)  # a marker is either whole or absent


def stop_group(proc):
    """End a stage's command and every process it started (trainers, pytest-xdist workers): its own group."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            pass


def run_command(cmd, log, seconds):
    """Run `cmd` with its output in `log`; its exit code, or OutOfTime when it outlives `seconds`."""
    log.write(f"$ {shlex.join(cmd)}\n")
    log.flush()
    proc = subprocess.Popen(cmd, cwd=H.ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})  # the log is current when cut off
    try:
        return proc.wait(timeout=None if seconds == float("inf") else max(seconds, 0))
    except subprocess.TimeoutExpired:
        stop_group(proc)
        raise OutOfTime from None
    except BaseException:  # interrupted: leave no trainer running on the device
        stop_group(proc)
        raise


def remove(path):
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def earlier(c, st):
    """The outcome of a finished earlier run of `st` that stands, or None (then it runs)."""
    if not c.marker(st.name).is_file() or c.args.force:
        return None
    done = json.loads(c.marker(st.name).read_text())
    missing = c.missing_products(st.name) if done["status"] == "ok" else []
    if missing:
        say(f"redoing {st.name}: its marker says ok but {', '.join(map(str, missing))} is gone")
        return None
    say(f"skipped {st.name}: already finished ({done['status']}, exit {done['exit_code']}, {done['seconds']:.1f}s); "
        "--force redoes it")
    return Outcome(f"{done['status']} (earlier)", done["seconds"], done["status"] != "ok")


def run_stage(c, st, seconds):
    """Run `st` in at most `seconds` (its estimate must fit to start); its Outcome."""
    blocked = [n for n in st.needs if not c.done(n)]
    if blocked:
        failed = [n for n in blocked if c.status(n) not in (None, "ok")]
        why = f"needs {', '.join(blocked)} to have finished ok"
        say(f"{'NOT RUN' if failed else 'WAITING'} {st.name}: {why}")
        return Outcome("not run" if failed else WAITING, None, bool(failed))
    cmds = st.commands(c)
    if isinstance(cmds, str):
        say(f"WAITING {st.name}: {cmds}")
        return Outcome(WAITING)
    estimate = c.plan.seconds[st.name]
    if estimate > seconds:
        say(f"NOT STARTED {st.name}: its estimate {estimate:.0f}s is more than the {max(seconds, 0):.0f}s left of "
            "the budget; the next run starts with it")
        return Outcome(NO_TIME)
    c.marker(st.name).unlink(missing_ok=True)
    for path in st.owns(c) if not st.resumes or c.args.force else ():
        remove(path)
    log = c.out / "logs" / f"{st.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    say(f"started {st.name}: {st.what} (estimate {estimate:.0f}s; log: {log})")
    start, t0, code = time.time(), time.perf_counter(), 0
    with open(log, "w") as f:
        try:
            for cmd in cmds:
                code = run_command(cmd, f, seconds - (time.perf_counter() - t0) - STOP_GRACE_S)
                if code:
                    break
        except OutOfTime:
            say(f"STOPPED {st.name} after {time.perf_counter() - t0:.1f}s (estimate {estimate:.0f}s): the budget "
                "ran out; it has no marker and runs again next time")
            return Outcome(CUT_OFF, time.perf_counter() - t0)
    seconds_taken = time.perf_counter() - t0
    status = "ok" if code == 0 else FAILED
    write_json(c.marker(st.name), {"name": st.name, "status": status, "exit_code": code,
                                   "seconds": round(seconds_taken, 3), "estimate": estimate,
                                   "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(start)),
                                   "log": str(log), "commands": [shlex.join(cmd) for cmd in cmds]})
    say(f"finished {st.name}: {status}, exit {code}, {seconds_taken:.1f}s (estimate {estimate:.0f}s)")
    if code:
        tail = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        print("\n".join(f"    | {line}" for line in tail), flush=True)
        if st.if_failed:
            say(f"!!! {st.name} FAILED: {st.if_failed} !!!")
    return Outcome(status, seconds_taken, bool(code))


def run_stages(c, selected, outcomes, after_each=lambda: None):
    """Each stage in order into `outcomes` ({name: Outcome}), within the budget less the finishing stages'
    estimates; a finishing stage (the report reads all that finished) again whenever this run finished one."""
    archive_s = ARCHIVE_S if c.budget.deadline is not None else 0
    reserve = sum(c.plan.seconds[st.name] for st in selected if st.finishing) + archive_s
    spent = False
    for st in selected:
        if st.finishing:
            redo = any(o.status == "ok" for o in outcomes.values()) or not c.done(st.name)
            run_one(c, st, outcomes, c.budget.left() - archive_s, redo)
        else:  # once a stage was stopped at the budget, nothing else starts
            run_one(c, st, outcomes, 0 if spent else c.budget.left() - reserve)
        after_each()
        spent = spent or outcomes[st.name].status == CUT_OFF


def run_one(c, st, outcomes, seconds, redo=False):
    """outcomes[st.name]: its earlier finish where that stands (not when `redo`), else this run in `seconds`."""
    try:
        outcomes[st.name] = (None if redo else earlier(c, st)) or run_stage(c, st, seconds)
    except KeyboardInterrupt:
        say(f"interrupted during {st.name}: it has no marker and runs again next time")
        outcomes[st.name] = Outcome("interrupted", None, True)
        raise


def last_json(text):
    """The JSON document that ends `text` (a module's output, after whatever its imports printed)."""
    start = text.rfind("\n{")
    return json.loads(text[start + 1:] if start >= 0 else text)


def machine_facts():
    """suite.machine's facts, collected in a process of its own (this one never touches the GPU, so it holds
    no CUDA context), with the commit and this interpreter."""
    proc = subprocess.run([PY, "-m", "suite.machine"], cwd=H.ROOT, capture_output=True, text=True)
    if proc.returncode:
        return {"error": proc.stderr.strip()[-2000:], "gpu_count": 0}
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=H.ROOT, capture_output=True, text=True)
    return {**last_json(proc.stdout), "python": sys.version.split()[0],
            "git_commit": git.stdout.strip() if git.returncode == 0 else None}


def write_baseline(c):
    """baseline.json: the matrix stages' pytest-benchmark saves as one file for --benchmark-compare and the gate
    (the other suite stages repeat the matrix's test names with other sizes, paths or data, so they stay out)."""
    saves = sorted((c.out / "benchmarks").glob("*/[0-9][0-9][0-9][0-9]_matrix-*.json"))
    if saves:
        docs = [json.loads(path.read_text()) for path in saves]
        write_json(c.out / "baseline.json", {**docs[0], "benchmarks": [b for doc in docs for b in doc["benchmarks"]]})


def write_session(c, table, facts, outcomes):
    def commands(st):
        cmds = st.commands(c)
        return cmds if isinstance(cmds, str) else [shlex.join(cmd) for cmd in cmds]

    write_json(c.out / "session.json", {
        "command": shlex.join([PY, "-m", PROG, *c.args.argv]), "dry_run": c.args.dry_run, "machine": facts,
        "budget_seconds": c.args.budget, "plan": vars(c.plan), "epochs": c.epochs, "repeats": c.repeats,
        "real_epochs": c.real_epochs, "workers": c.workers, "synthetic": str(c.synthetic),
        "real_subset": str(c.subset), "build_dir": str(c.build_dir),
        "stages": [{"name": st.name, "what": st.what, "estimate": c.plan.seconds[st.name], "needs": list(st.needs),
                    "commands": commands(st), "status": c.status(st.name),
                    "this_run": outcomes[st.name].status if st.name in outcomes else None} for st in table]})


def archive(c):
    """DIR as one .tar.gz (written whole, then renamed): one file to copy off the machine, current after every
    stage."""
    if not c.args.archive:
        return
    target = Path(c.args.archive).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp.{os.getpid()}")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(c.out, arcname=c.out.name, filter=lambda info: None if ".tmp." in info.name else info)
    os.replace(tmp, target)


def summary(outcomes, c):
    print(f"\n{'stage':<34} {'status':<24} {'seconds':>9} {'estimate':>9}", flush=True)
    for name, o in outcomes.items():
        took = "" if o.seconds is None else f"{o.seconds:9.1f}"
        print(f"{name:<34} {o.status:<24} {took:>9} {c.plan.seconds[name]:9.0f}")
    failed = [n for n, o in outcomes.items() if o.failed]
    left = [n for n, o in outcomes.items() if o.status in LEFT_FOR_LATER]
    print(f"\noutputs in {c.out}: stages/ (markers), logs/ (one per stage), results/<stage>/ (trainer JSON), "
          "benchmarks/ (pytest-benchmark saves), benchmark-json/, baseline.json, correctness.xml, sweep/, "
          "report/report.md, session.json" + (f"; archive {Path(c.args.archive).resolve()}" if c.args.archive else ""))
    if left:
        say(f"{len(left)} stage(s) left for the next run: {', '.join(left)} (the same command goes on)")
    if failed:
        say(f"{len(failed)} stage(s) failed or did not run: {', '.join(failed)} "
            "(logs/<stage>.log; --stages NAME --force retries one)")
    if "correctness" in failed:
        say("!!! the correctness proofs did not pass on this device: the benchmark numbers are not trustworthy !!!")
    sys.stdout.flush()


def parse_args(argv):
    p = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder; markers there make a rerun resume")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds this run may take: a stage starts only if its estimate fits, and the session ends "
                        "within them with the report (default: no limit)")
    p.add_argument("--stages", default="", help="comma-separated stage names to run (default: all, in priority order)")
    p.add_argument("--force", action="store_true", help="redo the selected stages even if already finished")
    p.add_argument("--dry-run", action="store_true", help="the same stages, tiny and on the CPU (tests this command)")
    p.add_argument("--real-subset", default=None,
                   help=f"real CIFAR-10 subset folder (default {DEFAULT_SUBSET.relative_to(H.ROOT)}; dry run: the "
                        "tiny synthetic set)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of the matrix runs (default 2; dry run 1)")
    p.add_argument("--real-epochs", type=int, default=None, help="epochs on the real subset (default 30; dry run 1)")
    p.add_argument("--repeats", type=int, default=None,
                   help="interleaved runs per language of the matrix stages (default 3; dry run 1)")
    p.add_argument("--build-dir", default=str(H.ROOT / "build"), help="C++ build folder (default build/)")
    p.add_argument("--archive", default=None, help="also write DIR as this .tar.gz after every stage")
    args = p.parse_args(argv)
    for name in ("epochs", "real_epochs", "repeats"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.budget is not None and args.budget <= 0:
        p.error("--budget must be a positive number of seconds")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args, p


def missing_modules(names=MODULES):
    """The suite's Python modules this interpreter cannot import, each with why (a module whose own dependency is
    missing, as jsonschema without rpds-py, is found but does not import)."""
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            missing.append(f"{name} ({err})")
    return missing


class Terminated(KeyboardInterrupt):
    """SIGTERM (a time limit) ends the running stage like Ctrl-C does: no marker for it."""


def _terminated(signum, frame):
    raise Terminated


def main(argv=None):
    args, parser = parse_args(argv)
    c = Ctx(args)
    table = stages(c)
    c.table = {st.name: st for st in table}
    names = [n for n in args.stages.split(",") if n]
    unknown = [n for n in names if n not in c.table]
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(c.table)}")
    selected = [st for st in table if not names or st.name in names]
    missing = missing_modules()
    if missing:  # every stage's pytest imports them: fail in one line now, not in each stage's log
        parser.error(f"python module(s) not importable: {'; '.join(missing)}; bring their wheels (docs/gpu.md)")
    facts = machine_facts()
    if not args.dry_run and not facts.get("gpu_count"):  # every stage would fail on its own, one by one
        why = (facts.get("error") or "torch.cuda.device_count() is 0").splitlines()[-1]
        parser.error(f"torch sees no GPU here ({why}); --dry-run rehearses the session on the CPU")
    signal.signal(signal.SIGTERM, _terminated)
    c.out.mkdir(parents=True, exist_ok=True)
    say(f"{'DRY RUN (tiny, CPU) ' if args.dry_run else ''}stages: {', '.join(st.name for st in selected)}; "
        f"output {c.out}" + (f"; budget {args.budget:.0f}s" if args.budget else ""))
    say(f"machine: {facts.get('gpu')}, torch {facts.get('torch')}, CUDA {facts.get('cuda')}, cuDNN "
        f"{facts.get('cudnn')}, driver {facts.get('driver')}")
    outcomes, code = {}, 0
    write_session(c, table, facts, outcomes)  # now too: a session killed outright (SIGKILL) still leaves it

    def after_each():
        write_baseline(c)
        archive(c)
    try:
        run_stages(c, selected, outcomes, after_each)
    except KeyboardInterrupt as err:
        code = 143 if isinstance(err, Terminated) else 130
    write_session(c, table, facts, outcomes)
    archive(c)
    summary(outcomes, c)
    if code:
        return code
    if any(o.failed for o in outcomes.values()):
        return 1
    return 3 if any(o.status in LEFT_FOR_LATER for o in outcomes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
