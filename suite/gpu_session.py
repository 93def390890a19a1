"""One GPU session in resumable stages: build, correctness, data, AOTI packages, the benchmark matrix, batch
sizes, real-subset accuracy, report.

    python3 -m suite.gpu_session --out DIR [--stages a,b] [--force] [--dry-run] [--real-subset DIR]
                                 [--epochs N] [--real-epochs N] [--build-dir DIR] [--archive FILE.tar.gz]

Each stage is one or a few subprocesses, sized to end well inside a 10-minute device call on an H100. A stage
that ends writes DIR/stages/<name>.json (status, exit code, seconds, commands), and a rerun of the same command
skips every stage that has one, so a session cut off by a time limit goes on where it stopped (--force redoes
the selected stages). --dry-run runs the same stages tiny and on the CPU, to test this command without a GPU.
README.md, "GPU machines", says how to use it on the device machine.
"""

import argparse
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

from bench.vocab import INFERENCE_PATHS, MODELS
from suite import harness as H

PROG = "suite.gpu_session"
PY = sys.executable
SUITE = ["tests/test_trainers.py", "tests/test_benchmarks.py"]
DEFAULT_SUBSETS = [H.ROOT / ".data" / "cifar10-real-subset", H.ROOT.parent / "shared" / "data" / "cifar10-real-subset"]
LOG_TAIL_LINES = 25


@dataclass(frozen=True)
class Plan:
    """What the stages run: the real GPU session, or the tiny CPU dry run of the same stages."""
    device: str
    synth: tuple          # (train, test) images of the synthetic set
    models: tuple
    modes: tuple          # the matrix's modes (bench.vocab.MODES)
    paths: str            # the matrix's inference paths
    latency_sizes: str    # the matrix's latency batch sizes
    batch_sizes: tuple    # the batch-size stages' training batch sizes (the matrix runs the preset's)
    epochs: int
    repeats: int          # runs per language of the matrix and batch-size stages, interleaved (suite --repeats)
    real_epochs: int
    real_batch: int
    trace_steps: int      # the traces stages' --trace-steps
    sweep: tuple = ()     # python -m suite.sweep's options beyond its defaults
    tiny: dict = field(default_factory=dict)  # suite options of every trainer run (a stage's own win)


GPU = Plan("cuda", (50_000, 10_000), tuple(MODELS), ("default", "bf16-cl", "foreach", "cudnn-benchmark", "idiomatic"),
           ",".join(INFERENCE_PATHS), "1,8,32,128", (64, 512), epochs=2, repeats=3, real_epochs=30,
           real_batch=128, trace_steps=5)
# Tiny: with --data and --device cpu the suite picks the full-cpu preset (5000/1000 images), so every size is
# given explicitly. A few training steps per run: the whole dry run takes about 80 s on 2 idle cores.
DRY = Plan("cpu", (128, 32), ("resnet18",), ("default",), "eager", "1", (16, 64), epochs=1, repeats=1, real_epochs=1,
           real_batch=32, trace_steps=2,
           sweep=("--batch-sizes", "1,2", "--repeats", "1", "--steps", "1", "--latency-iters", "2",
                  "--startup-runs", "1"),
           tiny={"--train-limit": 64, "--test-limit": 32, "--batch-size": 32, "--latency-iters": 2,
                 "--inference-paths": "eager", "--latency-batch-sizes": 1})


@dataclass
class Stage:
    name: str
    what: str
    # -> the commands to run in order (the first failure ends the stage), or a string saying why it cannot run.
    commands: object
    needs: tuple = ()     # stages that must have finished ok (a benchmark without a trainer or data measures nothing)
    owns: object = lambda c: []  # noqa: E731  what the stage (re)writes: removed before it runs, no stale files
    if_failed: str = ""   # said loudly when it fails


@dataclass
class Outcome:
    status: str
    seconds: float | None = None
    failed: bool = False


class Ctx:
    """The options and the paths every stage builder reads."""

    def __init__(self, args):
        from bench.data import cache_dir, synthetic_dir  # imports torch: only here, not at module import

        self.args, self.plan = args, (DRY if args.dry_run else GPU)
        self.out = Path(args.out).resolve()
        self.build_dir = Path(args.build_dir).resolve()
        self.epochs = args.epochs or self.plan.epochs
        self.real_epochs = args.real_epochs or self.plan.real_epochs
        self.repeats = args.repeats or self.plan.repeats
        self.workers = max(1, min(8, (os.cpu_count() or 2) // 2))  # DataLoader workers / xdist processes
        train, test = self.plan.synth
        self.synthetic = cache_dir() / synthetic_dir(train, test, 0)
        if args.dry_run:  # no real images on a CPU test machine: the tiny set stands in for them
            self.subset = self.synthetic
        else:
            self.subset = Path(args.real_subset or next((p for p in DEFAULT_SUBSETS if p.is_dir()), DEFAULT_SUBSETS[0]))

    def marker(self, name):
        return self.out / "stages" / f"{name}.json"

    def status(self, name):
        path = self.marker(name)
        return json.loads(path.read_text())["status"] if path.is_file() else None


# ---------------------------------------------------------------------------------------------------------
# Stage builders
# ---------------------------------------------------------------------------------------------------------

BUILD = """import sys
from suite import harness as H
try:
    print(H.build_cpp(sys.argv[1]))  # all cores
except H.BuildError as err:
    sys.exit(str(err))"""
SYNTH = """import sys
from suite import harness as H
print(H.ensure_synthetic(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))  # kept when already there"""
CHECK_SUMS = """import hashlib, pathlib, sys
folder = pathlib.Path(sys.argv[1])
for line in (folder / "SHA256SUMS").read_text().splitlines():
    digest, name = line.split()
    ok = hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    print(name, "OK" if ok else "CORRUPT")
    ok or sys.exit(f"{folder / name} does not match SHA256SUMS")"""


def correctness(c):
    xml = f"--junitxml={c.out / 'correctness.xml'}"
    common = ["--device", c.plan.device, "--build-dir", str(c.build_dir), xml]
    if c.args.dry_run:  # a cheap stand-in that still goes through pytest, the log and the JUnit XML
        return [[PY, "-m", "pytest", "tests/test_workflows.py", "-q", "-p", "no:xdist", *common]]
    # This module's own test runs the dry run on the CPU: nothing for the GPU to check there.
    return [[PY, "-m", "pytest", "-m", "gpu or not (slow or thorough)", "--benchmark-disable", "-n", str(c.workers),
             "--ignore=tests/test_gpu_session.py", *common]]


def subset_check(c):
    cmds = [[PY, "-m", "bench.prepare", "verify", str(c.subset)]]
    if (c.subset / "SHA256SUMS").is_file():
        cmds.append([PY, "-c", CHECK_SUMS, str(c.subset)])
    return cmds


def aoti_configs(plan):
    """The (precision, channels_last) of the AOTI packages the matrix's modes load."""
    return list(dict.fromkeys(H.mode_precision_and_layout(m) for m in plan.modes))


def aoti(c, model, precision, channels_last):
    """One folder of packages, one per latency batch size: the folder the suite passes as --aoti-dir."""
    return [H.aoti_package_command(model, c.plan.device, precision, channels_last, c.plan.latency_sizes.split(","))]


def suite(c, name, models, data, **opts):
    """One pytest run of the trainer tests and benchmarks (-p no:xdist: pytest-benchmark is off under xdist), with
    its results, benchmark save and JSON named after the stage: the suite names results
    <lang>-<model>-<mode>.json, so stages sharing a folder would overwrite each other."""
    (c.out / "benchmark-json").mkdir(parents=True, exist_ok=True)
    merged = {"--device": c.plan.device, "--data": data, "--models": ",".join(models), "--modes": "default",
              "--workers": c.workers, "--build-dir": c.build_dir, "--epochs": c.epochs, **c.plan.tiny,
              **{f"--{k.replace('_', '-')}": v for k, v in opts.items()},
              "--results-dir": c.out / "results" / name}
    return [[PY, "-m", "pytest", *SUITE, "-p", "no:xdist", "-s", *[str(x) for kv in merged.items() for x in kv],
             f"--benchmark-save={name}", f"--benchmark-storage=file://{c.out / 'benchmarks'}",
             f"--benchmark-json={c.out / 'benchmark-json' / f'{name}.json'}"]]


def suite_outputs(name):
    def owns(c):
        return [c.out / "results" / name, c.out / "benchmark-json" / f"{name}.json",
                *(c.out / "benchmarks").glob(f"*/[0-9][0-9][0-9][0-9]_{name}.json")]
    return owns


MERGE = """import json, sys
docs = [json.loads(open(path).read()) for path in sys.argv[2:]]
merged = {**docs[0], "benchmarks": [b for doc in docs for b in doc["benchmarks"]]}
with open(sys.argv[1], "w") as f:
    json.dump(merged, f, indent=4)
print(len(merged["benchmarks"]), "benchmarks from", len(docs), "saves ->", sys.argv[1])"""


def baseline(c):
    """One pytest-benchmark file for --benchmark-compare: the matrix stages' saves (complete sessions only; the
    other stages repeat the matrix's test names with other batch sizes or data, so they stay out)."""
    saves = sorted((c.out / "benchmarks").glob("*/[0-9][0-9][0-9][0-9]_matrix-*.json"))
    if not saves:
        return f"no saved matrix benchmarks under {c.out / 'benchmarks'} yet"
    return [[PY, "-c", MERGE, str(c.out / "baseline.json"), *map(str, saves)]]


def report(c):
    files = sorted((c.out / "results").glob("*/*.json"))
    if not files:
        return f"no results files under {c.out / 'results'} yet"
    return [[PY, "-m", "suite.report", *map(str, files), "--out", str(c.out / "report")]]


def stages(c):
    p, data = c.plan, ("build", "data-synthetic")
    table = [
        Stage("build", f"build the C++ trainer in {c.build_dir}", lambda c: [[PY, "-c", BUILD, str(c.build_dir)]]),
        Stage("correctness", "the correctness suite" + (" (dry run: a stand-in)" if c.args.dry_run else " on CUDA"),
              correctness, needs=("build",),
              if_failed="the benchmark stages still run, but they time trainers that FAILED the correctness suite "
                        "on this device: read logs/correctness.log before trusting any number"),
        Stage("data-synthetic", f"synthetic set {p.synth[0]}/{p.synth[1]} in {c.synthetic}",
              lambda c: [[PY, "-c", SYNTH, str(c.synthetic), *map(str, p.synth)]]),
        Stage("data-real-subset", f"check the real subset {c.subset}", subset_check),
    ]
    if "aoti" in p.paths:  # built once here (cached): the matrix then times instead of compiling
        table += [Stage(f"aoti-{m}-{prec}{'-cl' if cl else ''}",
                        f"AOTInductor packages {m} {prec}{' channels-last' if cl else ''} bs {p.latency_sizes}",
                        lambda c, m=m, prec=prec, cl=cl: aoti(c, m, prec, cl))
                  for m in p.models for prec, cl in aoti_configs(p)]
    # One stage per (model, mode): the whole matrix of one model would not fit in one 10-minute call.
    table += [Stage(f"matrix-{m}-{mode}", f"{m} {mode}, both languages, {c.epochs} epochs, latency {p.paths}",
                    lambda c, m=m, mode=mode: suite(c, f"matrix-{m}-{mode}", [m], c.synthetic, modes=mode,
                                                    inference_paths=p.paths, latency_batch_sizes=p.latency_sizes,
                                                    repeats=c.repeats),
                    needs=data, owns=suite_outputs(f"matrix-{m}-{mode}"))
              for m in p.models for mode in p.modes]
    table += [Stage(f"batch-{bs}", f"batch size {bs}, default mode, {','.join(p.models)}, {c.epochs} epochs",
                    lambda c, bs=bs: suite(c, f"batch-{bs}", p.models, c.synthetic, batch_size=bs,
                                           repeats=c.repeats),
                    needs=data, owns=suite_outputs(f"batch-{bs}"))
              for bs in p.batch_sizes]
    table += [Stage(f"accuracy-real-{m}", f"{m} accuracy on the real subset, both languages, {c.real_epochs} epochs",
                    lambda c, m=m: suite(c, f"accuracy-real-{m}", [m], c.subset, epochs=c.real_epochs,
                                         train_limit=0, test_limit=0, batch_size=p.real_batch, lr=0.1),
                    needs=("build", "data-real-subset"), owns=suite_outputs(f"accuracy-real-{m}"))
              for m in p.models]
    table += [Stage(f"traces-{m}", f"{m} profiler traces ({p.trace_steps} steps), both languages, default mode",
                    lambda c, m=m: suite(c, f"traces-{m}", [m], c.synthetic, trace_steps=p.trace_steps),
                    needs=data, owns=suite_outputs(f"traces-{m}"))
              for m in p.models]
    table.append(Stage("sweep", "the crossover: batch-size sweep of both languages, start-up and footprint",
                       lambda c: [[PY, "-m", "suite.sweep", "--out", str(c.out / "sweep"), "--device", p.device,
                                   "--build-dir", str(c.build_dir), *p.sweep]],
                       needs=("build",), owns=lambda c: [c.out / "sweep"]))
    table.append(Stage("baseline", "the matrix's benchmark saves as one baseline.json", baseline,
                       owns=lambda c: [c.out / "baseline.json"]))
    table.append(Stage("report", "suite.report of every results file", report, owns=lambda c: [c.out / "report"]))
    return table


# ---------------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------------

def say(msg):
    print(f"{PROG}: {msg}", flush=True)  # flushed: a cut-off call returns only what reached the pipe


def write_json(path, doc):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    os.replace(tmp, path)  # a marker is either whole or absent


def run_command(cmd, log):
    log.write(f"$ {shlex.join(cmd)}\n")
    log.flush()
    proc = subprocess.Popen(cmd, cwd=H.ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})  # the log is current when cut off
    try:
        return proc.wait()
    except BaseException:  # interrupted: leave no trainer running on the device
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise


def remove(path):
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def run_stage(c, st):
    marker = c.marker(st.name)
    if marker.is_file() and not c.args.force:
        done = json.loads(marker.read_text())
        say(f"skipped {st.name}: already finished ({done['status']}, exit {done['exit_code']}, "
            f"{done['seconds']:.1f}s); --force redoes it")
        return Outcome(f"{done['status']} (earlier)", done["seconds"], done["status"] != "ok")
    blocked = [n for n in st.needs if c.status(n) != "ok"]
    cmds = f"needs {', '.join(blocked)} to have finished ok" if blocked else st.commands(c)
    if isinstance(cmds, str):
        say(f"NOT RUN {st.name}: {cmds}")
        return Outcome("not run", None, True)
    marker.unlink(missing_ok=True)
    for path in st.owns(c):
        remove(path)
    log = c.out / "logs" / f"{st.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    say(f"started {st.name}: {st.what} (log: {log})")
    start, t0, code = time.time(), time.perf_counter(), 0
    with open(log, "w") as f:
        for cmd in cmds:
            code = run_command(cmd, f)
            if code:
                break
    seconds = time.perf_counter() - t0
    status = "ok" if code == 0 else "failed"
    write_json(marker, {"name": st.name, "status": status, "exit_code": code, "seconds": round(seconds, 3),
                        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(start)),
                        "log": str(log), "commands": [shlex.join(cmd) for cmd in cmds]})
    say(f"finished {st.name}: {status}, exit {code}, {seconds:.1f}s")
    if code:
        tail = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        print("\n".join(f"    | {line}" for line in tail), flush=True)
        if st.if_failed:
            say(f"!!! {st.name} FAILED: {st.if_failed} !!!")
    return Outcome(status, seconds, bool(code))


FACTS = """import json, os, platform, shutil, subprocess, sys, torch, torchvision
from bench.runtime import cpu_name
cuda = torch.cuda.is_available()
def run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
smi = shutil.which("nvidia-smi")
print(json.dumps({
    "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
    "driver": run([smi, "--query-gpu=driver_version", "--format=csv,noheader"]) if smi else None,
    "nvidia_smi": run([smi, "-L"]) if smi else None,
    "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
    "torchvision": torchvision.__version__, "python": sys.version.split()[0], "platform": platform.platform(),
    "cpu": cpu_name(), "cpu_count": os.cpu_count(), "git_commit": run(["git", "rev-parse", "HEAD"])}))"""


def machine_facts():
    """Collected in a subprocess: this process never touches the GPU, so it holds no CUDA context."""
    proc = subprocess.run([PY, "-c", FACTS], cwd=H.ROOT, capture_output=True, text=True)
    if proc.returncode:
        return {"error": proc.stderr.strip()[-2000:]}
    return json.loads(proc.stdout)


def write_session(c, table, facts, outcomes):
    def commands(st):
        cmds = st.commands(c)
        return cmds if isinstance(cmds, str) else [shlex.join(cmd) for cmd in cmds]

    write_json(c.out / "session.json", {
        "command": shlex.join([PY, "-m", PROG, *c.args.argv]), "dry_run": c.args.dry_run, "machine": facts,
        "plan": vars(c.plan), "epochs": c.epochs, "repeats": c.repeats, "real_epochs": c.real_epochs,
        "workers": c.workers, "synthetic": str(c.synthetic), "real_subset": str(c.subset),
        "build_dir": str(c.build_dir),
        "stages": [{"name": st.name, "what": st.what, "needs": list(st.needs), "commands": commands(st),
                    "status": c.status(st.name), "this_run": outcomes[st.name].status if st.name in outcomes else None}
                   for st in table]})


def archive(c):
    """DIR as one .tar.gz (written whole, then renamed): the device returns few files, at most 2 folders deep."""
    if not c.args.archive:
        return
    target = Path(c.args.archive).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp.{os.getpid()}")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(c.out, arcname=c.out.name, filter=lambda info: None if ".tmp." in info.name else info)
    os.replace(tmp, target)


def summary(outcomes, c):
    print(f"\n{'stage':<28} {'status':<16} {'seconds':>9}", flush=True)
    for name, o in outcomes.items():
        print(f"{name:<28} {o.status:<16} {'' if o.seconds is None else f'{o.seconds:9.1f}':>9}")
    failed = [n for n, o in outcomes.items() if o.failed]
    print(f"\noutputs in {c.out}: stages/ (markers), logs/ (one per stage), results/<stage>/ (trainer JSON), "
          f"benchmarks/ (pytest-benchmark saves), benchmark-json/, baseline.json, correctness.xml, report/report.md, "
          "session.json"
          + (f"; archive {Path(c.args.archive).resolve()}" if c.args.archive else ""))
    if failed:
        say(f"{len(failed)} stage(s) failed or did not run: {', '.join(failed)} "
            "(logs/<stage>.log; --stages NAME --force retries one)")
    if "correctness" in failed:
        say("!!! the correctness suite did not pass on this device: the benchmark numbers are not trustworthy !!!")
    sys.stdout.flush()


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder; markers there make a rerun resume")
    p.add_argument("--stages", default="", help="comma-separated stage names to run (default: all, in order)")
    p.add_argument("--force", action="store_true", help="redo the selected stages even if already finished")
    p.add_argument("--dry-run", action="store_true", help="the same stages, tiny and on the CPU (tests this command)")
    p.add_argument("--real-subset", default=None,
                   help=f"real CIFAR-10 subset folder (default: the first of {', '.join(map(str, DEFAULT_SUBSETS))})")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of the matrix and batch-size runs (default 2; dry run 1)")
    p.add_argument("--real-epochs", type=int, default=None, help="epochs on the real subset (default 30; dry run 1)")
    p.add_argument("--repeats", type=int, default=None,
                   help="interleaved runs per language of the matrix and batch-size stages (default 3; dry run 1)")
    p.add_argument("--build-dir", default=str(H.ROOT / "build"), help="C++ build folder (default build/)")
    p.add_argument("--archive", default=None, help="also write DIR as this .tar.gz after every stage")
    args = p.parse_args(argv)
    for name in ("epochs", "real_epochs", "repeats"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args, p


def missing_modules(names=("jsonschema", "pytest", "pytest_benchmark", "xdist", "torchvision", "yaml")):
    """The suite's Python dependencies this interpreter cannot import."""
    import importlib.util

    return [name for name in names if importlib.util.find_spec(name) is None]


class Terminated(KeyboardInterrupt):
    """SIGTERM (a time limit) ends the running stage like Ctrl-C does: no marker for it."""


def _terminated(signum, frame):
    raise Terminated


def main(argv=None):
    args, parser = parse_args(argv)
    c = Ctx(args)
    table = stages(c)
    names = [n for n in args.stages.split(",") if n]
    unknown = [n for n in names if n not in {st.name for st in table}]
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(st.name for st in table)}")
    selected = [st for st in table if not names or st.name in names]
    missing = missing_modules()
    if missing:  # every stage's pytest imports them: fail in one line now, not in each stage's log
        parser.error(f"python module(s) {', '.join(missing)} not installed; on the device machines carry their wheels "
                     "(README, \"GPU machines\")")
    signal.signal(signal.SIGTERM, _terminated)
    c.out.mkdir(parents=True, exist_ok=True)
    say(f"{'DRY RUN (tiny, CPU) ' if args.dry_run else ''}stages: {', '.join(st.name for st in selected)}; "
        f"output {c.out}")
    facts = machine_facts()
    say(f"machine: {', '.join(facts.get('gpus') or ['no GPU'])}, torch {facts.get('torch')}, "
        f"CUDA {facts.get('cuda')}, cuDNN {facts.get('cudnn')}, driver {facts.get('driver')}")
    outcomes, code = {}, 0
    write_session(c, table, facts, outcomes)  # now too: a call killed outright (SIGKILL) still leaves it
    try:
        for st in selected:
            outcomes[st.name] = run_stage(c, st)
            archive(c)
    except KeyboardInterrupt as err:
        running = next((st.name for st in selected if st.name not in outcomes), None)
        if running:
            say(f"interrupted during {running}: it has no marker and runs again next time")
            outcomes[running] = Outcome("interrupted", None, True)
        code = 143 if isinstance(err, Terminated) else 130
    write_session(c, table, facts, outcomes)
    archive(c)
    summary(outcomes, c)
    return code or (1 if any(o.failed for o in outcomes.values()) else 0)


if __name__ == "__main__":
    sys.exit(main())
