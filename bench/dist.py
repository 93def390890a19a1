"""Data-parallel training under torchrun (docs/distributed.md). Twin of cpp/dist.{h,cpp}.

A run is distributed when the launcher's environment is set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT; torchrun's agent store). Here: that environment; the job's store and the process group (gloo on CPU,
NCCL on CUDA, one GPU per rank); the model as one replica of the job (DistributedDataParallel with its defaults, or
the flat-allreduce ablation); the collectives the run needs besides the gradients' (epoch sums, every rank's step
times gathered on rank 0); and the watchdog, a heartbeat per rank in the store, by which a failure ends the job in
one line naming the rank that failed.
"""

import contextlib
import dataclasses
import os
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from bench.flags import UsageError, parse_int
from bench.runtime import first_line
from bench.vocab import DIST_BACKENDS, DIST_FEATURES, MAX_COUNT

MAX_RANKS = 1 << 20
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
BROADCAST_BUCKET_BYTES = 250 << 20  # DistributedDataParallel's broadcast_bucket_size
HEARTBEAT_MAX_S = 1.0  # a rank's heartbeat period: at most this, a quarter of --dist-timeout when that is shorter


class JobError(Exception):
    """A distributed run cannot start or go on (the store, the process group, a world size that does not match)."""


@dataclass(frozen=True)
class Launch:
    """The launcher's environment (torchrun sets every variable; started by hand, LOCAL_* default to one node)."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    nodes: int | None  # GROUP_WORLD_SIZE: torchrun's node groups; None when started without torchrun
    master_addr: str
    master_port: int
    agent_store: bool  # TORCHELASTIC_USE_AGENT_STORE: the torchrun agent hosts the store at MASTER_ADDR:MASTER_PORT
    restart: int  # TORCHELASTIC_RESTART_COUNT: keys of an earlier attempt stay apart


def read_launch(env=None):
    """The launcher's environment, or None for a single-process run (neither RANK nor WORLD_SIZE set)."""
    env = os.environ if env is None else env
    if "RANK" not in env and "WORLD_SIZE" not in env:
        return None
    missing = [name for name in LAUNCH_VARS if not env.get(name)]
    if missing:
        raise UsageError(f"a distributed run needs {', '.join(LAUNCH_VARS)} in its environment (torchrun sets "
                         f"them): {', '.join(missing)} not set")
    world = parse_int("WORLD_SIZE", env["WORLD_SIZE"], 1, MAX_RANKS)
    rank = parse_int("RANK", env["RANK"], 0, MAX_RANKS)
    if rank >= world:
        raise UsageError(f"RANK {rank} is not below WORLD_SIZE {world}: the launcher's world size does not match "
                         "its ranks")
    local_world = parse_int("LOCAL_WORLD_SIZE", env.get("LOCAL_WORLD_SIZE") or str(world), 1, world)
    local_rank = parse_int("LOCAL_RANK", env.get("LOCAL_RANK") or str(rank % local_world), 0, local_world - 1)
    nodes = parse_int("GROUP_WORLD_SIZE", env["GROUP_WORLD_SIZE"], 1, world) if env.get("GROUP_WORLD_SIZE") else None
    return Launch(rank, world, local_rank, local_world, nodes, env["MASTER_ADDR"],
                  parse_int("MASTER_PORT", env["MASTER_PORT"], 1, 65535),
                  env.get("TORCHELASTIC_USE_AGENT_STORE") == "True",
                  parse_int("TORCHELASTIC_RESTART_COUNT", env.get("TORCHELASTIC_RESTART_COUNT") or "0", 0, MAX_COUNT))


def connect_store(launch, timeout_s, host):
    """A connection to the job's store at MASTER_ADDR:MASTER_PORT, hosting it when `host` (job_store says who
    hosts), prefixed per launch attempt."""
    try:
        store = dist.TCPStore(launch.master_addr, launch.master_port, world_size=launch.world_size, is_master=host,
                              timeout=timedelta(seconds=timeout_s), wait_for_workers=False, multi_tenant=host)
    except Exception as err:  # torch's DistNetworkError / DistStoreError
        where = f"{launch.master_addr}:{launch.master_port} (MASTER_ADDR:MASTER_PORT)"
        raise JobError(f"rank {launch.rank} cannot {'host' if host else 'reach'} the job's store at {where}: "
                       f"{first_line(err)}") from None
    return dist.PrefixStore(f"bench/{launch.restart}/", store)


def job_store(launch, timeout_s):
    """The job's store: the torchrun agent's (every rank a client), else hosted by rank 0, as torch.distributed's
    env:// rendezvous does."""
    return connect_store(launch, timeout_s, host=launch.rank == 0 and not launch.agent_store)


# ---------------------------------------------------------------------------------------------------------
# The watchdog: one line per failed job
# ---------------------------------------------------------------------------------------------------------

class Watchdog:
    """Each rank's heartbeat in the job's store (a counter and the step the rank is at, every `period` seconds on a
    connection of its own), and the one line a failure ends the job with. A rank that meets a failure (a collective's
    error or timeout, the launcher's SIGTERM, its own error) reads the others' heartbeats for two periods: a rank
    whose heartbeat stopped crashed or was killed; one whose step is behind hung. The first rank to name the failure
    claims it in the store and prints the line; the others end without one."""

    def __init__(self, launch, timeout_s):
        self.rank, self.world_size = launch.rank, launch.world_size
        self.period = min(HEARTBEAT_MAX_S, timeout_s / 4)
        # A connection of its own: a store request of the main thread (a rendezvous waiting for the other ranks)
        # holds its connection for as long as it waits.
        self.store = connect_store(launch, timeout_s, host=False)
        self.step = -1  # the global step the main thread is at (-1: before training)
        self.beats = 0
        self.failing = False
        self.stopped = threading.Event()
        self.beat()
        threading.Thread(target=self.run, name="bench-heartbeat", daemon=True).start()

    def beat(self):
        self.beats += 1
        self.store.set(f"beat/{self.rank}", f"{self.beats} {self.step}")

    def run(self):
        while not self.stopped.wait(self.period):
            try:
                self.beat()
            except Exception:  # the store is gone: the job is ending
                return

    def finish(self):
        """This rank is done: no heartbeat from now on, and no rank should take its silence for a failure."""
        self.stopped.set()
        with contextlib.suppress(Exception):  # rank 0, which hosted the store, may be gone already: nobody asks
            self.store.set(f"beat/{self.rank}", "done")

    def peers(self):
        """{rank: (heartbeat counter, step) or None when done} of every other rank that has started."""
        found = {}
        for r in range(self.world_size):
            if r != self.rank and self.store.check([f"beat/{r}"]):
                value = self.store.get(f"beat/{r}").decode()
                found[r] = None if value == "done" else tuple(int(v) for v in value.split())
        return found

    def diagnose(self, cause):
        """The line naming what failed: a rank whose heartbeat stopped, else one behind this rank's step, else a
        rank that never started, else this rank."""
        before = self.peers()
        time.sleep(2 * self.period + 0.1)
        after = self.peers()
        stopped = [r for r, beat in after.items() if beat is not None and before.get(r) == beat]
        if stopped:
            r = stopped[0]
            return f"rank {r} crashed or was killed: its heartbeat stopped ({last_seen(after[r][1])}); rank " \
                   f"{self.rank} saw: {cause}"
        behind = sorted((beat[1], r) for r, beat in after.items() if beat is not None and beat[1] < self.step)
        if behind:
            step, r = behind[0]
            return f"rank {r} hung {at_step(step)} (rank {self.rank} waited {at_step(self.step)}): {cause}"
        absent = [r for r in range(self.world_size) if r != self.rank and r not in after]
        if absent:
            return f"rank {absent[0]} never joined the job; rank {self.rank} saw: {cause}"
        return f"rank {self.rank}: {cause}"

    def fail(self, cause, collective):
        """The job's one line for this failure, if this rank is the first to name it; None when another rank did,
        or this process is already naming one. A collective's failure or a signal (`collective`) is diagnosed; an
        error of this rank's own is its own."""
        if self.failing:
            return None
        self.failing = True
        cause = short_cause(cause)
        try:
            if self.store.check(["failure"]):
                return None
            line = self.diagnose(cause) if collective else f"rank {self.rank}: {cause}"
            return line if self.store.compare_set("failure", "", line).decode() == line else None
        except Exception:  # the store is gone (rank 0 hosted it): say what this rank knows
            return f"rank {self.rank}: {cause}"


def backend_problems():
    """{device type: why this torch has no backend for it} (empty with the wheels, which have both where they can)."""
    problems = {}
    if not dist.is_gloo_available():
        problems["cpu"] = "this torch was built without gloo"
    if not dist.is_nccl_available():
        problems["cuda"] = "this torch was built without NCCL (a CPU build)"
    return problems


def backends_text():
    """--help's lines on the backends: each feature, available or why not."""
    problems = backend_problems()
    return "\n".join(f"{feature}: " + (f"unavailable: {problems[kind]}" if kind in problems else "available")
                     for kind, feature in DIST_FEATURES.items())


def unavailable(device):
    """The results' `unavailable` entry for the run's device type, when this torch cannot train data-parallel there."""
    why = backend_problems().get(device.type)
    return [{"feature": DIST_FEATURES[device.type], "reason": why}] if why else []


def at_step(step):
    return f"at step {step}" if step >= 0 else "before the first training step"


def last_seen(step):
    return f"last at step {step}" if step >= 0 else "before the first training step"


def short_cause(cause):
    """A backend's error without its source location and advice ("[pair.cc:561] Connection closed by peer
    [127.0.0.1]:7896. This is typically caused by ..."): its first sentence."""
    return cause.split("] ", 1)[-1].split(". ")[0] if cause.startswith("[") else cause


# ---------------------------------------------------------------------------------------------------------
# The job
# ---------------------------------------------------------------------------------------------------------

@dataclass
class Job:
    """A distributed run: the launcher's environment, the watchdog and (once started) the process group."""

    launch: Launch
    store: object  # the job's store (kept open: rank 0 may be hosting it)
    watchdog: Watchdog
    backend: str = ""
    group: object = None
    device: torch.device | None = None

    @property
    def rank(self):
        return self.launch.rank

    @property
    def world_size(self):
        return self.launch.world_size


current = None  # the running job: main() and the signal handlers name its failures through it


def connect(args):
    """The job this process is a rank of (its store and watchdog), or None for a single-process run."""
    global current
    launch = read_launch()
    if launch is None:
        return None
    if args.data_pipeline != "matched":
        raise UsageError(f"--data-pipeline {args.data_pipeline} runs single-process only: a distributed run shards "
                         "the matched pipeline")
    store = job_store(launch, args.dist_timeout)
    current = Job(launch, store, Watchdog(launch, args.dist_timeout))
    return current


def gpu_index(job):
    """The GPU of this rank: LOCAL_RANK, when the machine has that many."""
    count = torch.cuda.device_count()
    if job.launch.local_rank >= count:
        raise UsageError(f"LOCAL_RANK {job.launch.local_rank} needs GPU {job.launch.local_rank}, but this machine has "
                         f"{count}: start at most {count} rank(s) per node (torchrun --nproc-per-node {count})")
    return job.launch.local_rank


def check_world_size(job):
    """Every rank agrees with rank 0 about the world size (ranks started by hand with different WORLD_SIZEs would
    otherwise wait for each other until the timeout)."""
    job.store.set(f"world_size/{job.rank}", str(job.world_size))
    ours, theirs = job.world_size, int(job.store.get("world_size/0"))
    if ours != theirs:
        raise UsageError(f"WORLD_SIZE {ours} here but {theirs} on rank 0: the ranks were started with different world "
                         "sizes")


def start(job, args, device):
    """The process group on the run's device: gloo on CPU, NCCL on CUDA (the rank's GPU). Checks first that this
    torch has the backend and that every rank agrees with rank 0 about the world size."""
    if device.type in backend_problems():
        raise UsageError(f"{DIST_FEATURES[device.type]} is unavailable: {backend_problems()[device.type]}")
    check_world_size(job)
    job.backend, job.device = DIST_BACKENDS[device.type], device
    dist.init_process_group(job.backend, store=dist.PrefixStore("default_pg", job.store), rank=job.rank,
                            world_size=job.world_size, timeout=timedelta(seconds=args.dist_timeout),
                            device_id=device if device.type == "cuda" else None)
    job.group = dist.group.WORLD
    return job


def failure_line(cause, collective):
    """The line an error ends this process with: the cause itself in a single-process run; in a distributed one the
    job's line naming the rank that failed, or None when another rank names it. `collective`: any error but a usage
    error may come from another rank (a collective's error or timeout, a signal), so the watchdog diagnoses it."""
    return cause if current is None else current.watchdog.fail(cause, collective)


def finish(job):
    """The rank leaves the job: the watchdog stops and the process group is destroyed."""
    job.watchdog.finish()
    dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------------------
# One replica of the model, and the run's own collectives
# ---------------------------------------------------------------------------------------------------------

def is_synced_step(step, no_sync_blocks):
    """--no-sync-blocks N: blocks of N steps with gradient sync, then N without, in turn (0: every step syncs)."""
    return no_sync_blocks == 0 or (step // no_sync_blocks) % 2 == 0


class DataParallel:
    """The model as one replica of the job, and this rank's record of its training steps.

    forward() runs the model with DistributedDataParallel's forward-pass work (the reducer prepared, rank 0's
    BatchNorm buffers broadcast); after_backward() averages the gradients where DDP does not (the flat ablation: one
    allreduce after backward). A training step of the timed run is framed by begin_step (--no-sync-blocks: DDP's
    no_sync() in the blocks without sync) and end_step (its time); warm-up steps always sync."""

    def __init__(self, model, job, args):
        self.model, self.job, self.grad_sync, self.no_sync_blocks = model, job, args.grad_sync, args.no_sync_blocks
        self.params = list(model.parameters())
        self.buffers = list(model.buffers())
        self.synced, self.no_sync = True, None
        self.clock = StepClock(job.device)
        self.step_seconds, self.step_synced, self.step_losses = [], [], []
        if args.grad_sync == "ddp":
            cuda = job.device.type == "cuda"
            self.ddp = DistributedDataParallel(model, device_ids=[job.device.index] if cuda else None,
                                               process_group=job.group)
        else:  # what DDP's construction does besides the reducer: rank 0's parameters and buffers everywhere
            self.ddp = None
            self.broadcast(self.params + self.buffers)
            self.forward_sync = True  # DDP's require_forward_param_sync: the last forward was a synced one

    def broadcast(self, tensors):
        with torch.no_grad():
            dist._broadcast_coalesced(self.job.group, [t.detach() for t in tensors], BROADCAST_BUCKET_BYTES, 0)

    def forward(self, x):
        if self.ddp is not None:
            return self.ddp(x)
        if self.forward_sync and self.buffers:  # as DDP's _pre_forward: rank 0's buffers before every synced forward
            self.broadcast(self.buffers)
        self.forward_sync = self.synced
        return self.model(x)

    def after_backward(self):
        """The flat ablation's allreduce: every gradient in one buffer, pre-divided by the world size as DDP's
        buckets are, summed across ranks, copied back."""
        if self.ddp is not None or not self.synced:
            return
        grads = [p.grad for p in self.params]
        flat = torch.cat([g.reshape(-1) for g in grads]).mul_(1.0 / self.job.world_size)
        dist.all_reduce(flat, group=self.job.group)
        for grad, part in zip(grads, flat.split([g.numel() for g in grads])):
            grad.copy_(part.view_as(grad))

    def set_sync(self, synced):
        if synced == self.synced:
            return
        self.synced = synced
        if self.ddp is not None and not synced:
            self.no_sync = self.ddp.no_sync()
            self.no_sync.__enter__()
        elif self.no_sync is not None:
            self.no_sync.__exit__(None, None, None)
            self.no_sync = None

    def start_epoch(self):
        self.clock.mark()

    def begin_step(self, step):
        self.job.watchdog.step = step
        self.set_sync(is_synced_step(step, self.no_sync_blocks))
        self.step_synced.append(self.synced)

    def end_step(self):
        self.clock.mark()

    def end_epoch(self, result, step_losses):
        """After the epoch's clock: its step times and losses kept, its loss and counts summed over the ranks."""
        self.set_sync(True)
        self.step_seconds += self.clock.seconds()
        self.step_losses += step_losses
        sum_across_ranks(self.job, result.loss_sum, result.correct)
        result.images *= self.job.world_size

    def section(self, args):
        """The results' `distributed` section (every rank calls it; rank 0's is the one written): every rank's step
        times (and losses, with --record-step-losses), gathered."""
        launch = self.job.launch
        return {"world_size": launch.world_size, "local_world_size": launch.local_world_size, "nodes": launch.nodes,
                "backend": self.job.backend, "grad_sync": self.grad_sync, "per_rank_batch_size": args.batch_size,
                "global_batch_size": args.batch_size * launch.world_size, "no_sync_blocks": self.no_sync_blocks,
                "timeout_seconds": args.dist_timeout,
                "step_seconds": gather_rows(self.job, self.step_seconds, torch.float64),
                "step_synced": self.step_synced,
                "step_losses": gather_rows(self.job, self.step_losses, torch.float64)
                if args.record_step_losses else None}


def sum_across_ranks(job, *tensors):
    """Each tensor summed over the ranks, in place (the epoch's loss and correct counts)."""
    for t in tensors:
        dist.all_reduce(t, group=job.group)


def gather_rows(job, values, dtype):
    """Every rank's list of values (the same length on every rank), in rank order."""
    if not values:  # --eval-only: no step on any rank (gloo gathers no empty tensor)
        return [[] for _ in range(job.world_size)]
    mine = torch.tensor(values, dtype=dtype, device=job.device)
    rows = [torch.empty_like(mine) for _ in range(job.world_size)]
    dist.all_gather(rows, mine, group=job.group)
    return [row.tolist() for row in rows]


def barrier(job):
    dist.barrier(group=job.group)


def rank_args(args, job):
    """The command line as this rank runs it: rank 0 writes the files (results, dumps, traces); the other ranks only
    their weights (their BatchNorm statistics are their own), beside rank 0's as PATH.rank<r>."""
    if job is None or job.rank == 0:
        return args
    return dataclasses.replace(args, results=None, dump_init=None, dump_batch=None, dump_logits=None, trace_steps=0,
                               trace_dir=None, save_weights=args.save_weights and f"{args.save_weights}.rank{job.rank}")


class StepClock:
    """This rank's training step times. On CPU the host clock at each step's end (a CPU step is done when its last
    op returns); on CUDA an event on the stream per step, read once the epoch's clock has synchronized, so that the
    steps stay free of host syncs."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"
        self.marks = []

    def mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter_ns())

    def seconds(self):
        """The intervals between the marks (call after the device has finished them); the marks are cleared."""
        marks, self.marks = self.marks, []
        if self.cuda:
            return [a.elapsed_time(b) / 1e3 for a, b in zip(marks, marks[1:])]
        return [(b - a) / 1e9 for a, b in zip(marks, marks[1:])]
