"""Data-parallel runs for the suite (docs/distributed.md): launching a trainer under torchrun, the exact single-process
emulation of a W-rank run (the proof that sharding and averaging are right), and what a distributed run measured:
the job's step times (per step the slowest rank's), global throughput, scaling efficiency, exposed communication
and the allreduce time from the profiler traces.

    python -m suite.dist RESULTS.json...     # the scaling table of distributed runs' results
"""

import argparse
import os
import statistics
import subprocess
import sys

from bench.vocab import DIST_FEATURES
from suite import harness as H

PROG = "suite.dist"
JOB_TIMEOUT_S = 900  # a job that outlives this is a hung test, whatever its --dist-timeout
# A gradient allreduce in a trace: gloo's scope around it (on gloo's own threads), on CUDA NCCL's kernels.
GLOO_ALLREDUCE = "gloo:all_reduce"
NCCL_KERNEL_PREFIX = "ncclDevKernel"
# The --help line that says whether a trainer can train data-parallel on CPU (bench/dist.py, cpp/dist.cpp).
GLOO_FEATURE = DIST_FEATURES["cpu"]


# ---------------------------------------------------------------------------------------------------------
# Launching
# ---------------------------------------------------------------------------------------------------------

def job_command(lang, args, cpp_exe=None, nproc=2, launcher=("--standalone",)):
    """torchrun (this Python's) starting `nproc` ranks of a trainer; `launcher` holds torchrun's rendezvous flags."""
    run = [sys.executable, "-m", "torch.distributed.run", *launcher, "--nproc-per-node", str(nproc)]
    if lang == "cpp":
        return [*run, "--no-python", str(cpp_exe), *args]
    return [*run, "-m", "bench.train", *args]


def run_job(lang, args, cpp_exe=None, nproc=2, env=None, launcher=("--standalone",), timeout=JOB_TIMEOUT_S):
    """Run one job; returns the CompletedProcess (the ranks' and torchrun's output, captured). `env` adds variables
    (None removes one)."""
    full_env = {k: v for k, v in {**os.environ, "PYTHONPATH": str(H.ROOT), **(env or {})}.items() if v is not None}
    H.count_trainer_starts(lang, nproc)  # torchrun starts them: one trainer process per rank
    return subprocess.run(job_command(lang, args, cpp_exe, nproc, launcher), cwd=H.ROOT, env=full_env, text=True,
                          capture_output=True, timeout=timeout)


def cpp_unavailable(cpp_exe):
    """Why this bench_train cannot train data-parallel on CPU (its --help says, from its build), or None."""
    out = subprocess.run([str(cpp_exe), "--help"], capture_output=True, text=True, timeout=60).stdout
    said = next((line.split(": ", 1)[1] for line in out.splitlines() if line.startswith(GLOO_FEATURE + ": ")),
                f"its --help has no '{GLOO_FEATURE}' line")
    return None if said == "available" else said.removeprefix("unavailable: ")


# ---------------------------------------------------------------------------------------------------------
# The exact single-process emulation of a W-rank run
# ---------------------------------------------------------------------------------------------------------

def emulate(data_dir, *, model="resnet18", seed=0, batch_size=4, world_size=2, epochs=1, lr=0.1, train_limit=0,
            optimizer_impl="per-tensor", precision="fp32"):
    """A W-rank data-parallel run (the trainers' defaults otherwise: no warm-up needed, it leaves a run untouched)
    computed in this process, one thread: every rank's generator makes the same draws; per step each rank's rows
    of the global batch go forward and backward separately, from rank 0's BatchNorm buffers (DDP broadcasts them
    before every forward); the gradients are averaged as DDP's buckets do (each pre-multiplied by 1/W, then summed
    in rank order: for W = 2 that is gloo's sum, bit for bit); rank 0's buffers are kept; one optimizer step.
    Returns (every rank's step losses, every rank's final state dict: the same parameters, the rank's own BatchNorm
    statistics from its last forward)."""
    import torch
    import torch.nn.functional as F

    from bench.data import draw_epoch_augmentation, load_split, normalize, random_crop_flip
    from bench.model import init_weights, make_model
    from bench.runtime import autocast
    from bench.train import lr_at_step, make_optimizer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchrun's ranks: the same kernels' bits
    try:
        train_x, train_y = load_split(data_dir, train=True, limit=train_limit)
        generators = [torch.Generator().manual_seed(seed) for _ in range(world_size)]
        net = make_model(model)
        for g in generators:  # every rank initializes (the same draws), then DDP broadcasts rank 0's weights
            init_weights(net, g)
        net.train()
        options = argparse.Namespace(lr=lr, optimizer_impl=optimizer_impl)
        optimizer = make_optimizer(net, options)
        params = list(net.parameters())
        n, rows = train_x.shape[0], world_size * batch_size
        steps = sum(1 for start in range(0, n, rows) if min(start + rows, n) - start >= world_size)
        losses = [[] for _ in range(world_size)]
        device = torch.device("cpu")
        for epoch in range(epochs):
            draws = [draw_epoch_augmentation(n, g) for g in generators]  # every rank's, the same
            for i in range(steps):
                step = epoch * steps + i
                # The contract (docs/distributed.md), written out here rather than taken from the trainers' code:
                # global batch i is positions [i*W*B, (i+1)*W*B); rank r takes the r-th of W equal slices of it.
                start = i * rows
                per_rank = (min(start + rows, n) - start) // world_size
                batches = []
                for r, (perm, crops, flips) in enumerate(draws):
                    pos = slice(start + r * per_rank, start + (r + 1) * per_rank)
                    batches.append((normalize(random_crop_flip(train_x[perm[pos]], crops[pos], flips[pos])),
                                    train_y[perm[pos]]))
                buffers = [b.clone() for b in net.buffers()]  # rank 0's, broadcast before every forward
                grads, kept = [], []
                for r, (x, y) in enumerate(batches):
                    with torch.no_grad():
                        for b, saved in zip(net.buffers(), buffers):
                            b.copy_(saved)
                    optimizer.zero_grad(set_to_none=True)
                    with autocast(device, precision):
                        loss = F.cross_entropy(net(x), y)
                    loss.backward()
                    grads.append([p.grad * (1.0 / world_size) for p in params])
                    losses[r].append(loss.item())
                    kept.append([b.clone() for b in net.buffers()])  # the rank's statistics after its forward
                with torch.no_grad():
                    for b, saved in zip(net.buffers(), kept[0]):  # rank 0's stay
                        b.copy_(saved)
                for p, parts in zip(params, zip(*grads)):
                    total = parts[0]
                    for part in parts[1:]:
                        total = total + part
                    p.grad = total
                for group in optimizer.param_groups:
                    group["lr"] = lr_at_step(step, epochs * steps, lr)
                optimizer.step()
        names = [name for name, _ in net.named_buffers()]
        return losses, [{**{k: v.clone() for k, v in net.state_dict().items()}, **dict(zip(names, rank_buffers))}
                        for rank_buffers in kept]
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------------
# What a distributed run measured
# ---------------------------------------------------------------------------------------------------------

def job_step_seconds(section):
    """Per timed step, the job's time: the slowest rank's (the others wait for it at the next collective)."""
    return [max(times) for times in zip(*section["step_seconds"])]


def synced_steps(section, synced=True):
    """The job's step times of the steps that synchronized their gradients (or, synced=False, of those that did not:
    --no-sync-blocks)."""
    return [t for t, s in zip(job_step_seconds(section), section["step_synced"]) if s == synced]


def exposed_comm_seconds(section):
    """The communication a step waits for: the median synced step minus the median step without sync (the same run's
    --no-sync-blocks); None when the run had no blocks without sync."""
    without = synced_steps(section, synced=False)
    if not without:
        return None
    return statistics.median(synced_steps(section)) - statistics.median(without)


def run_summary(doc, trace=None):
    """One run's distributed facts and numbers: its synced job step times (seconds), its exposed communication, and
    (`trace`: rank 0's training trace) its traced synced steps' allreduce times."""
    section = doc["distributed"]
    return {"language": doc["language"], "model": doc["model"], "world_size": section["world_size"],
            "threads": doc["device"]["threads"], "grad_sync": section["grad_sync"],
            "per_rank_batch_size": section["per_rank_batch_size"], "global_batch_size": section["global_batch_size"],
            "device": doc["device"]["type"], "steps": synced_steps(section),
            "exposed_comm_s": exposed_comm_seconds(section),
            "allreduce": [s for s in allreduce_seconds(trace) if s > 0] if trace else []}  # the synced traced steps


def median_or_none(values):
    return statistics.median(values) if values else None


def scaling_rows(docs, trace_file=None):
    """Per (language, model, grad_sync, per-rank batch, threads per rank, device) and world size, over the runs: the
    job's synced step time (median, p10-p90 of every run's steps), global images/s at that median, the weak-scaling
    efficiency against the same configuration's one-rank job (throughput_W / (W x throughput_1); None without one),
    the runs' median exposed communication, and the traced runs' median allreduce time. Traced runs
    (--trace-steps: their steps are not benchmark numbers) give only the allreduce time. trace_file(doc, "train"):
    where a run's trace is (or None). The report's scaling section (suite/report/) renders them."""
    from suite.report.samples import RunSamples

    groups = {}
    for doc in docs:
        if doc.get("distributed"):
            traced = bool(doc["config"].get("trace_steps"))
            s = run_summary(doc, trace_file(doc, "train") if trace_file and traced else None)
            key = (s["language"], s["model"], s["grad_sync"], s["per_rank_batch_size"], s["threads"], s["device"])
            groups.setdefault(key, {}).setdefault(s["world_size"], {"timed": [], "traced": []})[
                "traced" if traced else "timed"].append(s)
    rows = []
    for key in sorted(groups):
        by_world = {}
        for w, runs in sorted(groups[key].items()):
            if not runs["timed"]:
                continue
            steps = RunSamples([run["steps"] for run in runs["timed"]], "s")
            first = runs["timed"][0]
            by_world[w] = {**{k: first[k] for k in ("language", "model", "world_size", "threads", "grad_sync",
                                                     "per_rank_batch_size", "device")},
                           "step_median_s": steps.median, "step_p10_s": steps.percentile(10),
                           "step_p90_s": steps.percentile(90),
                           "images_per_second": first["global_batch_size"] / steps.median,
                           "exposed_comm_s": median_or_none([r["exposed_comm_s"] for r in runs["timed"]
                                                             if r["exposed_comm_s"] is not None]),
                           "allreduce_s": median_or_none([a for r in runs["traced"] for a in r["allreduce"]]),
                           "runs": len(runs["timed"])}
        one = by_world.get(1)
        for w, row in by_world.items():
            row["efficiency"] = row["images_per_second"] / (w * one["images_per_second"]) if one else None
            rows.append(row)
    return rows


def allreduce_seconds(trace_path):
    """Per traced training step of rank 0's trace: the time its gradient allreduces took (the union of the backend's
    all_reduce scopes that start inside the step, on the backend's threads; on CUDA NCCL's kernels)."""
    from suite import traces

    events = traces.load(trace_path)
    collectives = [e for e in events if (e.cat == "user_annotation" and e.name == GLOO_ALLREDUCE) or
                   (e.cat == "kernel" and e.name.startswith(NCCL_KERNEL_PREFIX))]
    return [traces.union_length([(e.ts, e.end) for e in collectives if step.ts <= e.ts < step.end]) / 1e9
            for step in traces.steps(events)]


def main(argv=None):
    p = argparse.ArgumentParser(prog=PROG, description="The scaling table of distributed runs' results documents.")
    p.add_argument("results", nargs="+")
    args = p.parse_args(argv)
    from suite.report.cli import load_all
    from suite.report.markdown import scaling_table
    from suite.report.sections import trace_file
    from suite.schema import ResultsError

    try:
        docs = load_all(args.results)
    except ResultsError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    print(scaling_table(scaling_rows(docs, trace_file)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
