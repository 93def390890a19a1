"""Train and time a CIFAR ResNet from Python. Twin of cpp/train.cpp: same flags, same steps, same results.

    python -m bench.train --model resnet18 --epochs 1 --data DIR --results out.json

`run` at the end is the recipe; each of its steps is a function above it, in the order the steps run.
"""

import math
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench import dist, process, results
from bench.data import (
    dataset_identity,
    find_default_data,
    global_batches,
    load_split,
    matched_batches,
    normalize,
    ordered_batches,
    rank_rows,
)
from bench.flags import UsageError, parse_args, parse_float, parse_int
from bench.infer import InferOptions, check_aoti_packages, measure_concurrency, measure_latency, trace_inference
from bench.model import init_weights, make_model, param_count
from bench.results import EpochRecord, Inference, Training, final_json, results_document
from bench.runtime import (
    as_input_layout,
    autocast,
    empty_samples_us,
    first_line,
    now_ns,
    peak_memory_bytes,
    peak_rss_bytes,
    reset_peak_memory,
    run_facts,
    seconds_since,
    seconds_since_process_start,
)
from bench.trace import EVALUATE, STEP, Trace, scope, traced_now_ns
from bench.vocab import MOMENTUM, NESTEROV, PROGRAMS, WEIGHT_DECAY
from bench.weights import load_weights, save_tensor_dict, save_weights

PROG = PROGRAMS["python"]
EXIT_RUNTIME_ERROR = 1
EXIT_USAGE_ERROR = 2
EXIT_SIGNAL_BASE = 128  # killed by signal N: exit 128 + N, as a shell reports it
MAX_HOOK_MS = 3_600_000  # an hour per step: far above any test's slowdown
INT64_MAX = 2**63 - 1


class RunError(Exception):
    """The run cannot go on (a non-finite loss): exit 1, as every other error that is not a usage error."""


# ---------------------------------------------------------------------------------------------------------
# Test hooks and the options of the parts
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TestHooks:
    """Test hooks (docs/gate.md, "Test hooks"): a per-step sleep, a per-step time added to the record without waiting,
    a NaN loss or an abort at one global step; in a distributed run on every rank, or on the rank BENCH_HOOK_RANK
    names (BENCH_PLANT: bench/process.py). The results' process section records every hook that was set."""

    __test__ = False  # not a pytest test class
    sleep_per_step_ms: float = 0.0
    add_ms_per_step: float = 0.0
    nan_at_step: int = -1
    crash_at_step: int = -1


def read_test_hooks():
    """The hooks set in the environment; a malformed value is a usage error, as a bad flag is."""
    sleep, add, nan, crash, rank = (os.environ.get(f"BENCH_{name}") for name in
                                    ("SLEEP_PER_STEP_MS", "ADD_MS_PER_STEP", "NAN_AT_STEP", "CRASH_AT_STEP",
                                     "HOOK_RANK"))
    if rank and parse_int("BENCH_HOOK_RANK", rank, 0, INT64_MAX) != int(os.environ.get("RANK") or 0):
        return TestHooks()  # the hooks act on another rank
    # Unset, empty or "0": none (a time's own limit excludes 0, as --lr's does).
    return TestHooks(parse_float("BENCH_SLEEP_PER_STEP_MS", sleep, 0, MAX_HOOK_MS) if sleep not in (None, "", "0")
                     else 0.0,
                     parse_float("BENCH_ADD_MS_PER_STEP", add, 0, MAX_HOOK_MS) if add not in (None, "", "0") else 0.0,
                     parse_int("BENCH_NAN_AT_STEP", nan, 0, INT64_MAX) if nan else -1,
                     parse_int("BENCH_CRASH_AT_STEP", crash, 0, INT64_MAX) if crash else -1)


def added_seconds(hooks, steps):
    """BENCH_ADD_MS_PER_STEP's time for `steps` training steps: added to the recorded times, never waited."""
    return hooks.add_ms_per_step * steps / 1000


def infer_options(args):
    return InferOptions(args.model, args.precision, args.channels_last, args.inference_paths,
                        args.latency_batch_sizes, args.latency_iters, args.latency_warmup, args.concurrency,
                        args.concurrency_iters, args.aoti_dir)


def pipeline_options(args):
    from bench.pipeline import PipelineOptions  # torchvision: imported only by the idiomatic pipeline, which uses it

    return PipelineOptions(args.batch_size, args.workers, args.seed, args.train_limit, args.test_limit)


# ---------------------------------------------------------------------------------------------------------
# Setting up: backend, data, model, batches
# ---------------------------------------------------------------------------------------------------------

def setup_backend(args, job):
    """The run's device (a distributed run's GPU is its LOCAL_RANK), and the process-wide settings its flags ask for."""
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda", dist.gpu_index(job) if job else 0) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.deterministic:
        torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    return device


@dataclass
class Data:
    """The run's records. Training images stay uint8 (on the device for the matched pipeline); the test images
    are normalized once and stay on the device in the run's layout (evaluation, latency)."""

    folder: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def load_data(args, device):
    folder, note = (args.data, None) if args.data is not None else find_default_data()
    if note:
        print(f"{PROG}: note: {note}", file=sys.stderr, flush=True)
    train_x, train_y = load_split(folder, train=True, limit=args.train_limit)
    test_x, test_y = load_split(folder, train=False, limit=args.test_limit)
    if args.data_pipeline == "matched":  # uint8, augmented per batch on the device
        train_x, train_y = train_x.to(device), train_y.to(device)
    test_x = as_input_layout(normalize(test_x.to(device)), args.channels_last)
    return Data(folder, train_x, train_y, test_x, test_y.to(device))


def identify_dataset(data):
    """(the dataset's identity, the seconds it took): its SHA-256 over the six files, read after the start-up's
    clock. Hashing is side work, not the API's start-up: each language hashes with another implementation
    (OpenSSL / cpp/sha256.cpp), at another speed (docs/twins.md, "Start-up")."""
    t0 = time.perf_counter_ns()
    dataset = dataset_identity(data.folder, data.train_x.shape[0], data.test_x.shape[0])
    return dataset, (time.perf_counter_ns() - t0) / 1e9


def build_model(args, device, generator):
    """The network, initialized from the run's one generator, then --load-weights, on the device, in its layout."""
    model = make_model(args.model)
    init_weights(model, generator)
    if args.dump_init:
        save_weights(model, args.dump_init)
    if args.load_weights:
        load_weights(model, args.load_weights, args.model)
    model.to(device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def make_optimizer(model, args):
    """SGD with the recipe's momentum, Nesterov and weight decay. foreach is always given: left to its
    default, PyTorch picks the multi-tensor kernels on CUDA, which C++'s per-tensor loop does not run."""
    return torch.optim.SGD(model.parameters(), lr=args.lr, momentum=MOMENTUM, nesterov=NESTEROV,
                           weight_decay=WEIGHT_DECAY, foreach=args.optimizer_impl == "foreach")


@dataclass
class BatchSources:
    """Where each epoch's training batches and each evaluation's batches come from (one pass per call)."""

    train: Callable
    test: Callable


def batch_sources(args, data, device, generator, job):
    if args.data_pipeline == "idiomatic":
        from bench.pipeline import device_batches, idiomatic_loaders

        train_loader, test_loader = idiomatic_loaders(data.folder, device, pipeline_options(args))
        return BatchSources(lambda: device_batches(train_loader, device), lambda: device_batches(test_loader, device))
    rank, world_size = (job.rank, job.world_size) if job else (0, 1)
    return BatchSources(lambda: matched_batches(data.train_x, data.train_y, generator, args.batch_size, rank,
                                                world_size),
                        lambda: ordered_batches(data.test_x, data.test_y, args.batch_size))


# ---------------------------------------------------------------------------------------------------------
# Training and evaluation
# ---------------------------------------------------------------------------------------------------------

def lr_at_step(step, total_steps, peak_lr):
    """Linear warm-up over the first fifth of the steps, then linear decay towards zero."""
    warmup = max(1, total_steps // 5)
    if step < warmup:
        return peak_lr * (step + 1) / warmup
    return peak_lr * (total_steps - step) / (total_steps - warmup)


def train_step(model, optimizer, x, y, lr, device, precision, replica):
    """One SGD step at learning rate `lr`; returns the loss and the logits on the device, without waiting. In a
    distributed run the forward goes through the replica, which averages the gradients across ranks."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast(device, precision):
        logits = model(x) if replica is None else replica.forward(x)
        loss = F.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if replica is not None:
        replica.after_backward()
    optimizer.step()
    return loss, logits


@dataclass
class EpochResult:
    loss_sum: torch.Tensor  # float32 scalar on the device
    correct: torch.Tensor  # int64 scalar on the device
    step_losses: torch.Tensor  # [steps] on the device
    images: int
    lr: float


def train_epoch(model, optimizer, batches, device, first_step, total_steps, args, hooks, dump_batch, trace,
                trace_stop, replica):
    """One epoch over `batches` ((x, y) on the device). Nothing here waits for the device. `dump_batch` (may
    be None) sees the first batch of the run. `trace` (may be None) records each step in a STEP scope and stops
    after `trace_stop` steps (0: the caller stops it). `replica` (None in a single-process run) frames each step."""
    model.train()
    loss_sum = torch.zeros((), dtype=torch.float32, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    step_losses = []
    images = 0
    lr = args.lr
    for i, (x, y) in enumerate(batches):
        with scope(STEP, trace):
            step = first_step + i
            if replica is not None:
                replica.begin_step(step)
            lr = lr_at_step(step, total_steps, args.lr)
            x = as_input_layout(x, args.channels_last)
            if dump_batch is not None and step == 0:
                dump_batch(x, y)
            if step == hooks.crash_at_step:
                os.abort()  # a trainer crash, as a segfault or OOM kill would be
            if step == hooks.nan_at_step:
                x = x * float("nan")  # a NaN loss at this step, as a diverging run would have
            loss, logits = train_step(model, optimizer, x, y, lr, device, args.precision, replica)
            loss_sum += loss.detach() * y.shape[0]
            correct += (logits.argmax(1) == y).sum()
            step_losses.append(loss.detach())
            images += y.shape[0]
            if hooks.sleep_per_step_ms > 0:
                time.sleep(hooks.sleep_per_step_ms / 1000)
            if replica is not None:
                replica.end_step()
        if trace is not None and i + 1 == trace_stop:
            trace.stop()
    return EpochResult(loss_sum, correct, torch.stack(step_losses), images, lr)


def evaluate(model, batches, device, args):
    """Mean loss and accuracy (%) over `batches`, one host read at the end."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float32, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    n = 0
    with torch.inference_mode(), autocast(device, args.precision):
        for x, y in batches:
            logits = model(as_input_layout(x, args.channels_last))
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            n += y.shape[0]
    return loss_sum.item() / n, 100.0 * correct.item() / n


def warmup_shapes(n, batch_size, full_steps, world_size=1):
    """The batch sizes (per rank) a pass over n records in batches of batch_size produces, each once: `full_steps`
    times the full batch, then the partial last batch if there is one."""
    sizes = [hi - lo for lo, hi in (rank_rows(*rows, 0, world_size) for rows in global_batches(n, batch_size,
                                                                                                world_size))]
    return sizes[:1] * full_steps + (sizes[-1:] if sizes[-1] != sizes[0] else [])


def warm_up(model, data, device, args, replica):
    """Untimed training steps at every shape the timed run will see (args.warmup_steps full batches, the
    partial last batch), then evaluation at the full and partial eval batch, in the run's precision and
    layout: cuDNN/cuBLAS handles, lazy kernel loading, per-shape plans (autotuning with --cudnn-benchmark)
    and the allocator's pools are ready before the first clock read. The run stays as if none had happened:
    the batches come from a generator of their own, the optimizer is a throwaway one, the weights and
    BatchNorm buffers are restored. In a distributed run the steps go through the replica (DDP's first
    iterations, its bucket rebuild included, are warm-up). Returns the seconds it took."""
    t0 = now_ns(device)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = make_optimizer(model, args)
    generator = torch.Generator().manual_seed(args.seed)  # not the run's generator: its draws stay untouched
    x_u8, y = data.train_x[:args.batch_size].to(device), data.train_y[:args.batch_size].to(device)
    model.train()
    world_size = replica.job.world_size if replica else 1
    for n in warmup_shapes(data.train_x.shape[0], args.batch_size, args.warmup_steps, world_size):
        x, y_n = next(matched_batches(x_u8[:n], y[:n], generator, n))
        train_step(model, optimizer, as_input_layout(x, args.channels_last), y_n, args.lr, device, args.precision,
                   replica)
    for n in warmup_shapes(data.test_x.shape[0], args.batch_size, 1):
        evaluate(model, ordered_batches(data.test_x[:n], data.test_y[:n], n), device, args)
    model.load_state_dict(saved)
    model.zero_grad(set_to_none=True)
    seconds = seconds_since(t0, device)
    print(f"warm-up {args.warmup_steps} steps {seconds:.3f}s", file=sys.stderr, flush=True)
    return seconds


def prepare_trace_dir(args):
    """--trace-dir, made before anything runs: a folder that cannot be made stops the run now, not after training."""
    if args.trace_steps:
        try:
            os.makedirs(args.trace_dir, exist_ok=True)
        except OSError as err:
            raise RunError(f"cannot create --trace-dir {args.trace_dir}: {err.strerror}") from None


def check_step_losses(step_losses, epoch, steps_per_epoch):
    """The epoch's losses as floats; a non-finite one stops the run, naming its step."""
    step_losses = step_losses.cpu()
    bad = (~torch.isfinite(step_losses)).nonzero()
    if bad.numel():
        s = int(bad[0])
        raise RunError(f"non-finite training loss at epoch {epoch} step {s} (global step "
                       f"{(epoch - 1) * steps_per_epoch + s}); no results written")
    return step_losses.tolist()


def check_test_loss(test_loss, epoch):
    if not math.isfinite(test_loss):  # finite training losses, yet the last update broke the weights
        raise RunError(f"non-finite test loss at epoch {epoch}: the weights diverged; no results written")


def epoch_record(epoch, result, train_seconds, eval_seconds, test_loss, test_acc):
    images = result.images
    return EpochRecord(epoch, train_seconds, eval_seconds, images / train_seconds, result.loss_sum.item() / images,
                       100.0 * result.correct.item() / images, test_loss, test_acc, result.lr)


def print_progress(epoch, epochs, rec, elapsed):
    eta = elapsed / epoch * (epochs - epoch)
    print(f"epoch {epoch}/{epochs} train {rec.train_seconds:.3f}s eval {rec.eval_seconds:.3f}s "
          f"loss {rec.train_loss:.4f} acc {rec.train_accuracy:.2f}% test_loss {rec.test_loss:.4f} "
          f"test_acc {rec.test_accuracy:.2f}% lr {rec.lr:.6f} elapsed {elapsed:.1f}s eta {eta:.1f}s",
          file=sys.stderr, flush=True)


def train_trace(args, device):
    """The profiler for the traced epoch (--trace-steps), or None."""
    return Trace(device, results.trace_files(args)["train"]) if args.trace_steps else None


def train(model, optimizer, sources, data, device, args, hooks, replica):
    """The timed epochs: each trains, checks its losses, evaluates, and is recorded and printed. The
    window (time and peak memory) opens here: warm-up, data loading and the model's creation excluded. In a
    distributed run every rank trains its rows of each global batch; rank 0 alone evaluates (the model itself, not
    its replica), records and prints, while the others wait for it."""
    world_size = replica.job.world_size if replica else 1
    steps_per_epoch = len(global_batches(data.train_x.shape[0], args.batch_size, world_size))
    if not steps_per_epoch:
        raise RunError(f"{data.train_x.shape[0]} training records cannot give each of {world_size} ranks one")

    dump_batch = None  # None without --dump-batch; built here, outside every timed window
    if args.dump_batch:
        def dump_batch(x, y):
            save_tensor_dict({"images": x, "labels": y, "test_images": data.test_x}, args.dump_batch)
    epochs, step_losses = [], []
    reset_peak_memory(device)
    start = now_ns(device)
    for epoch in range(1, 0 if args.eval_only else args.epochs + 1):
        trace = train_trace(args, device) if epoch == args.epochs else None  # recording before the clock reads
        with process.window("epoch", f"epoch {epoch}"):
            t0 = traced_now_ns(device, trace)
            if replica is not None:
                replica.start_epoch()
            # K steps recorded; an epoch of K steps or fewer is traced whole, with its evaluation
            result = train_epoch(model, optimizer, sources.train(), device, (epoch - 1) * steps_per_epoch,
                                 args.epochs * steps_per_epoch, args, hooks, dump_batch, trace,
                                 args.trace_steps if args.trace_steps < steps_per_epoch else 0, replica)
            train_seconds = (traced_now_ns(device, trace) - t0) / 1e9 + added_seconds(hooks, result.step_losses.numel())
        losses = check_step_losses(result.step_losses, epoch, steps_per_epoch)
        step_losses += losses
        if replica is not None:
            replica.end_epoch(result, losses)
        if replica is None or replica.job.rank == 0:
            t0 = now_ns(device)
            test_batches = sources.test()
            with scope(EVALUATE, trace):
                test_loss, test_acc = evaluate(model, test_batches, device, args)
            eval_seconds = seconds_since(t0, device)
            if trace is not None:
                trace.stop()
            check_test_loss(test_loss, epoch)
            epochs.append(epoch_record(epoch, result, train_seconds, eval_seconds, test_loss, test_acc))
            print_progress(epoch, args.epochs, epochs[-1], seconds_since(start, device))
        if replica is not None:
            dist.barrier(replica.job)
    total_seconds = seconds_since(start, device) + added_seconds(hooks, len(step_losses))
    return Training(epochs, step_losses, total_seconds, None if args.eval_only else peak_memory_bytes(device),
                    replica.section(args) if replica is not None else None)


def final_metrics(model, sources, training, device, args):
    """The last epoch's metrics; with --eval-only, one evaluation of the model as loaded."""
    if not args.eval_only:
        last = training.epochs[-1]
        return final_json(last.train_loss, last.train_accuracy, last.test_loss, last.test_accuracy)
    test_loss, test_acc = evaluate(model, sources.test(), device, args)
    print(f"eval test_loss {test_loss:.4f} test_acc {test_acc:.2f}%", file=sys.stderr, flush=True)
    return final_json(None, None, test_loss, test_acc)


# ---------------------------------------------------------------------------------------------------------
# Inference and what the run leaves behind
# ---------------------------------------------------------------------------------------------------------

def measure_inference(model, test_x, device, options, outputs, args):
    """Latency per path and batch size, then concurrency, then (--trace-steps) the traced inference samples.
    With `outputs` (a dict, --dump-logits), the eval-mode test logits go in first, then each path's output."""
    if outputs is not None:
        model.eval()
        with torch.inference_mode(), autocast(device, options.precision):
            outputs["logits"] = model(test_x).float()
    latency, unavailable = [], []
    if options.latency_iters:
        latency, unavailable = measure_latency(model, test_x, device, options, outputs)
    concurrency = measure_concurrency(model, test_x, device, options) if options.concurrency else []
    if args.trace_steps:
        trace_inference(model, test_x, device, options, args.trace_steps, results.trace_files(args)["inference"])
    return Inference(latency, unavailable, concurrency)


def save_outputs(args, model, inference, outputs):
    """The files the flags ask for, and a note for each inference path that could not run."""
    if outputs is not None:
        save_tensor_dict(outputs, args.dump_logits)
    for item in inference.unavailable:
        print(f"{PROG}: note: {item['feature']} skipped: {item['reason']}", file=sys.stderr, flush=True)
    if args.save_weights:
        save_weights(model, args.save_weights)


# ---------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------

def run(args):
    hooks = read_test_hooks()
    plants = process.read_plants()
    job = dist.connect(args)  # None unless launched by torchrun (or with its environment)
    args = dist.rank_args(args, job)
    device = setup_backend(args, job)
    record = process.start_record(plants)  # the process's state, from here on (BENCH_PLANT's drifts planted)
    if job is not None:
        dist.start(job, args, device)
    check_aoti_packages(infer_options(args), device)
    prepare_trace_dir(args)
    data = load_data(args, device)
    generator = torch.Generator().manual_seed(args.seed)
    model = build_model(args, device, generator)
    replica = dist.DataParallel(model, job, args) if job is not None else None
    optimizer = make_optimizer(model, args)
    sources = batch_sources(args, data, device, generator, job)
    startup_seconds = seconds_since_process_start(device)  # the model ready: before its first step or inference
    dataset, dataset_hash_seconds = identify_dataset(data)
    warmup_seconds = warm_up(model, data, device, args, replica) if args.warmup_steps and not args.eval_only else None
    empty_samples = empty_samples_us(device)
    training = train(model, optimizer, sources, data, device, args, hooks, replica)
    if job is not None and job.rank != 0:  # rank 0 measures inference and writes the results
        if args.save_weights:
            save_weights(model, args.save_weights)
        return dist.finish(job)
    final = final_metrics(model, sources, training, device, args)
    outputs = {} if args.dump_logits else None
    inference = measure_inference(model, data.test_x, device, infer_options(args), outputs, args)
    inference.unavailable += dist.unavailable(device)
    save_outputs(args, model, inference, outputs)
    doc = results_document(args, run_facts(device, args.precision), param_count(model), dataset,
                           startup_seconds, dataset_hash_seconds, warmup_seconds, empty_samples, training, final,
                           inference, peak_rss_bytes(), record.section())
    if args.results:
        results.write_results_atomic(doc, args.results)
    if job is not None:
        dist.finish(job)
    return doc


def on_signal(signum, _frame):
    if dist.current is not None and dist.current.watchdog.failing:
        return  # this process is naming a failure already: let it finish
    line = dist.failure_line(f"interrupted by {signal.Signals(signum).name}", collective=True)  # None: named already
    if results.pending_tmp is not None:  # interrupted while writing the results: no half-written file stays
        results.pending_tmp.unlink(missing_ok=True)
    if line is not None:
        print(f"{PROG}: error: {line}; no results written", file=sys.stderr, flush=True)
    os._exit(EXIT_SIGNAL_BASE + signum)


def fail(err, code):
    """The error's one line (in a distributed run, the job's line naming the rank that failed, printed by the rank
    that names it first) and the exit status. A distributed run ends at once: its process group may be broken."""
    line = dist.failure_line(first_line(err), collective=code != 2)
    if line is not None:
        print(f"{PROG}: error: {line}", file=sys.stderr, flush=True)
    if dist.current is not None:
        os._exit(code)
    return code


def main(argv=None):
    signal.signal(signal.SIGINT, on_signal)  # before parsing, as in C++
    signal.signal(signal.SIGTERM, on_signal)
    try:
        run(parse_args(argv))
    except UsageError as err:
        return fail(err, EXIT_USAGE_ERROR)
    except Exception as err:  # data, weights, non-finite loss, writing, torch's own (out of memory): one line
        return fail(err, EXIT_RUNTIME_ERROR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
