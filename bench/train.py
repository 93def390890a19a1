"""Train and time a CIFAR ResNet from Python. Twin of cpp/train.cpp: same flags, same steps, same results.

    python -m bench.train --model resnet18 --epochs 1 --data DIR --results out.json
"""

import argparse
import math
import os
import re
import signal
import sys
import time  # the BENCH_SLEEP_PER_STEP_MS test hook

import torch
import torch.nn.functional as F

from bench import data as D
from bench import infer as I
from bench import model as M
from bench import results as R
from bench.results import SCHEMA_VERSION, write_results_atomic
from bench.runtime import (
    as_input_layout,
    autocast,
    cpu_name,
    empty_samples_us,
    now_ns,
    peak_memory_bytes,
    precision_label,
    reset_peak_memory,
    seconds_since,
)

PROG = "bench.train"
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
SCHEDULE = "linear-warmup-linear-decay"
PRECISIONS = ("fp32", "bf16")
OPTIMIZER_IMPLS = ("per-tensor", "foreach")
DATA_PIPELINES = ("matched", "idiomatic")
INFERENCE_PATHS = ("eager", "compile", "aoti", "cuda-graph")
# Untimed full-batch training steps before the first clock read (then one at the partial batch and the
# evaluation shapes). Plans, handles, lazy kernels and cuDNN autotuning happen on a shape's first step; the
# caching allocator reaches its steady pools by the second or third. Three steps cover both at a cost of
# three steps (README, "Warm-up", has the CPU measurement behind the choice).
WARMUP_STEPS = 3


class UsageError(Exception):
    """Bad flags: exit 2."""


class RunError(Exception):
    """The run cannot go on (data, weights, non-finite loss, writing): exit 1."""


# ---------------------------------------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise UsageError(message)


def _positive_ints(text, what):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"{what} must be >= 1, got {text!r}")
    return values


def _int_list(text):
    return _positive_ints(text, "batch sizes")


def _concurrency_list(text):
    return _positive_ints(text, "thread counts") if text else []


def _name_list(text):
    names = text.split(",")
    if "" in names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected distinct comma-separated names, got {text!r}")
    return names


def parse_args(argv=None):
    p = _Parser(prog=PROG, allow_abbrev=False,
                description="Train and time a CIFAR ResNet (Python twin of build/bench_train).")
    p.add_argument("--model", default="resnet18", help="resnet18 | resnet34 (default: resnet18)")
    p.add_argument("--epochs", type=int, default=1, help="training epochs, >= 1 (default: 1)")
    p.add_argument("--batch-size", type=int, default=128, help="training and eval batch size (default: 128)")
    p.add_argument("--lr", type=float, default=0.1, help="peak learning rate (default: 0.1)")
    p.add_argument("--data", default=None, help="CIFAR-10 binary folder (default: official set in the cache)")
    p.add_argument("--train-limit", type=int, default=0, help="use the first N training records, 0 = all")
    p.add_argument("--test-limit", type=int, default=0, help="use the first N test records, 0 = all")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    p.add_argument("--seed", type=int, default=0, help="seed of the one generator (default: 0)")
    p.add_argument("--threads", type=int, default=0, help="CPU intra-op threads, 0 = torch default")
    p.add_argument("--results", default=None, help="write the results JSON here")
    p.add_argument("--latency-batch-sizes", type=_int_list, default=[1, 32, 128],
                   help="comma-separated batch sizes for latency (default: 1,32,128)")
    p.add_argument("--latency-iters", type=int, default=100, help="timed forwards per batch size, 0 = skip")
    p.add_argument("--latency-warmup", type=int, default=10, help="untimed forwards first (default: 10)")
    p.add_argument("--warmup-steps", type=int, default=WARMUP_STEPS,
                   help=f"untimed training steps before the first timed one, 0 = none (default: {WARMUP_STEPS})")
    p.add_argument("--save-weights", default=None, help="write the trained weights here")
    p.add_argument("--load-weights", default=None, help="start from these weights (either language's)")
    p.add_argument("--eval-only", action="store_true", help="no training: evaluate and time latency")
    p.add_argument("--deterministic", action="store_true", help="torch deterministic algorithms")
    p.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN autotune convolutions")
    p.add_argument("--record-step-losses", action="store_true", help="add every step's loss to the results")
    p.add_argument("--dump-init", default=None, help="write the weights right after init")
    p.add_argument("--dump-batch", default=None, help="write the first augmented batch and test images")
    p.add_argument("--dump-logits", default=None, help="write the eval-mode logits of the test images")
    # Modes (docs/twins.md, "Modes"): how the same computation runs.
    p.add_argument("--precision", default="fp32", help="fp32 | bf16 (autocast) (default: fp32)")
    p.add_argument("--channels-last", action="store_true", help="channels_last weights and inputs")
    p.add_argument("--optimizer-impl", default="per-tensor", help="per-tensor | foreach SGD kernels")
    p.add_argument("--data-pipeline", default="matched", help="matched | idiomatic (default: matched)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the idiomatic pipeline")
    p.add_argument("--inference-paths", type=_name_list, default=["eager"],
                   help=f"comma-separated latency paths: {','.join(INFERENCE_PATHS)} (default: eager)")
    p.add_argument("--concurrency", type=_concurrency_list, default=[],
                   help="comma-separated thread counts for concurrent batch-1 inference (default: none)")
    p.add_argument("--concurrency-iters", type=int, default=50, help="timed requests per thread (default: 50)")
    args = p.parse_args(argv)

    if args.model not in M.STAGES:
        raise UsageError(f"unknown model {args.model!r} (choose from {', '.join(M.STAGES)})")
    for flag, value, choices in [("device", args.device, ("auto", "cpu", "cuda")),
                                 ("precision", args.precision, PRECISIONS),
                                 ("optimizer implementation", args.optimizer_impl, OPTIMIZER_IMPLS),
                                 ("data pipeline", args.data_pipeline, DATA_PIPELINES)]:
        if value not in choices:
            raise UsageError(f"unknown {flag} {value!r} (choose from {', '.join(choices)})")
    for path in args.inference_paths:
        if path not in INFERENCE_PATHS:
            raise UsageError(f"unknown inference path {path!r} (choose from {', '.join(INFERENCE_PATHS)})")
    for flag, value, low in [("--epochs", args.epochs, 1), ("--batch-size", args.batch_size, 1),
                             ("--train-limit", args.train_limit, 0), ("--test-limit", args.test_limit, 0),
                             ("--threads", args.threads, 0), ("--latency-iters", args.latency_iters, 0),
                             ("--latency-warmup", args.latency_warmup, 0), ("--warmup-steps", args.warmup_steps, 0),
                             ("--workers", args.workers, 0),
                             ("--concurrency-iters", args.concurrency_iters, 1)]:
        if value < low:
            raise UsageError(f"{flag} must be >= {low}, got {value}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise UsageError(f"--lr must be a positive number, got {args.lr}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was requested but CUDA is not available")
    return args


# ---------------------------------------------------------------------------------------------------------
# Training and evaluation
# ---------------------------------------------------------------------------------------------------------

def lr_at_step(step, total_steps, peak_lr):
    """Linear warm-up over the first fifth of the steps, then linear decay towards zero."""
    warmup = max(1, total_steps // 5)
    if step < warmup:
        return peak_lr * (step + 1) / warmup
    return peak_lr * (total_steps - step) / (total_steps - warmup)


class TestHooks:
    """Test hooks (README "Test hooks"): a per-step sleep, a NaN loss or an abort at one global step."""

    __test__ = False  # not a pytest test class

    def __init__(self, sleep_per_step_ms=0.0, nan_at_step=-1, crash_at_step=-1):
        self.sleep_per_step_ms, self.nan_at_step, self.crash_at_step = sleep_per_step_ms, nan_at_step, crash_at_step


def read_test_hooks():
    def env(name, parse, default):
        value = os.environ.get(name)
        try:
            return parse(value) if value else default
        except ValueError:
            raise UsageError(f"argument {name}: invalid {parse.__name__} value: {value!r}") from None
    return TestHooks(env("BENCH_SLEEP_PER_STEP_MS", float, 0.0), env("BENCH_NAN_AT_STEP", int, -1),
                     env("BENCH_CRASH_AT_STEP", int, -1))


def make_optimizer(model, args):
    """SGD with the recipe's momentum, Nesterov and weight decay. foreach is always given: left to its
    default, PyTorch picks the multi-tensor kernels on CUDA, which C++'s per-tensor loop does not run."""
    return torch.optim.SGD(model.parameters(), lr=args.lr, momentum=MOMENTUM, nesterov=True,
                           weight_decay=WEIGHT_DECAY, foreach=args.optimizer_impl == "foreach")


def train_step(model, optimizer, x, y, lr, device, precision):
    """One SGD step at learning rate `lr`; returns the loss and the logits on the device, without waiting."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast(device, precision):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss, logits


def train_epoch(model, optimizer, batches, device, first_step, total_steps, args, hooks, dump_batch=None):
    """One epoch over `batches` ((x, y) on the device); returns device tensors (loss sum, correct count,
    per-step losses), the number of images and the last lr. Nothing here waits for the device."""
    model.train()
    loss_sum = torch.zeros((), dtype=torch.float32, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    step_losses = []
    images = 0
    lr = args.lr
    for i, (x, y) in enumerate(batches):
        step = first_step + i
        lr = lr_at_step(step, total_steps, args.lr)
        x = as_input_layout(x, args.channels_last)
        if dump_batch is not None and step == 0:
            dump_batch(x, y)
        if step == hooks.crash_at_step:
            os.abort()  # a trainer crash, as a segfault or OOM kill would be
        if step == hooks.nan_at_step:
            x = x * float("nan")  # a NaN loss at this step, as a diverging run would have
        loss, logits = train_step(model, optimizer, x, y, lr, device, args.precision)
        loss_sum += loss.detach() * y.shape[0]
        correct += (logits.argmax(1) == y).sum()
        step_losses.append(loss.detach())
        images += y.shape[0]
        if hooks.sleep_per_step_ms > 0:
            time.sleep(hooks.sleep_per_step_ms / 1000)
    return loss_sum, correct, torch.stack(step_losses), images, lr


def warmup_shapes(n, batch_size, full_steps):
    """The batch sizes a pass over n records in batches of batch_size produces, each once: `full_steps`
    times the full batch, then the partial last batch if there is one."""
    return [min(n, batch_size)] * full_steps + ([n % batch_size] if n > batch_size and n % batch_size else [])


def warm_up(model, train_x, train_y, test_x, test_y, device, args):
    """Untimed training steps at every shape the timed run will see (args.warmup_steps full batches, the
    partial last batch), then evaluation at the full and partial eval batch, in the run's precision and
    layout: cuDNN/cuBLAS handles, lazy kernel loading, per-shape plans (autotuning with --cudnn-benchmark)
    and the allocator's pools are ready before the first clock read. The run stays as if none had happened:
    the batches come from a generator of their own, the optimizer is a throwaway one, the weights and
    BatchNorm buffers are restored. Returns the seconds it took."""
    t0 = now_ns(device)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = make_optimizer(model, args)
    generator = torch.Generator().manual_seed(args.seed)  # not the run's generator: its draws stay untouched
    x_u8, y = train_x[:args.batch_size].to(device), train_y[:args.batch_size].to(device)
    model.train()
    for n in warmup_shapes(train_x.shape[0], args.batch_size, args.warmup_steps):
        x, y_n = next(D.matched_batches(x_u8[:n], y[:n], generator, n))
        train_step(model, optimizer, as_input_layout(x, args.channels_last), y_n, args.lr, device, args.precision)
    for n in warmup_shapes(test_x.shape[0], args.batch_size, 1):
        evaluate(model, D.ordered_batches(test_x[:n], test_y[:n], n), device, args)
    model.load_state_dict(saved)
    model.zero_grad(set_to_none=True)
    return seconds_since(t0, device)


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


# ---------------------------------------------------------------------------------------------------------
# Facts about the run
# ---------------------------------------------------------------------------------------------------------

def torch_version():
    """MAJOR.MINOR.PATCH, what C++ knows (TORCH_VERSION_*): no local or pre-release suffix."""
    return re.match(r"\d+\.\d+\.\d+", torch.__version__).group()


def device_info(device):
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"type": device.type, "name": name, "threads": torch.get_num_threads()}


def backend_flags():
    return {"cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "deterministic": torch.are_deterministic_algorithms_enabled()}


def progress_line(epoch, epochs, rec, elapsed):
    eta = elapsed / epoch * (epochs - epoch)
    return (f"epoch {epoch}/{epochs} train {rec['train_seconds']:.3f}s eval {rec['eval_seconds']:.3f}s "
            f"loss {rec['train_loss']:.4f} acc {rec['train_accuracy']:.2f}% test_loss {rec['test_loss']:.4f} "
            f"test_acc {rec['test_accuracy']:.2f}% lr {rec['lr']:.6f} elapsed {elapsed:.1f}s eta {eta:.1f}s")


# ---------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------

def run(args):
    hooks = read_test_hooks()
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.deterministic:
        torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark

    data_dir = args.data if args.data is not None else str(D.default_data_dir())
    try:
        train_x, train_y = D.load_split(data_dir, train=True, limit=args.train_limit)
        test_x, test_y = D.load_split(data_dir, train=False, limit=args.test_limit)
        dataset = D.dataset_identity(data_dir, train_x.shape[0], test_x.shape[0])
    except (D.DataError, OSError) as err:
        raise RunError(str(err)) from None
    if args.data_pipeline == "matched":  # uint8, augmented per batch on the device
        train_x, train_y = train_x.to(device), train_y.to(device)
    test_x = as_input_layout(D.normalize(test_x.to(device)), args.channels_last)
    test_y = test_y.to(device)

    generator = torch.Generator().manual_seed(args.seed)
    model = M.make_model(args.model)
    M.init_weights(model, generator)
    if args.dump_init:
        M.save_weights(model, args.dump_init)
    if args.load_weights:
        try:
            M.load_weights(model, args.load_weights, args.model)
        except M.WeightsError as err:
            raise RunError(str(err)) from None
    model.to(device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, args)

    if args.data_pipeline == "idiomatic":
        from bench import pipeline as P

        try:
            train_loader, test_loader = P.idiomatic_loaders(data_dir, device, args)
        except (D.DataError, OSError) as err:
            raise RunError(str(err)) from None
        epoch_batches = lambda: P.device_batches(train_loader, device)  # noqa: E731
        test_source = lambda: P.device_batches(test_loader, device)  # noqa: E731
    else:
        epoch_batches = lambda: D.matched_batches(train_x, train_y, generator, args.batch_size)  # noqa: E731
        test_source = lambda: D.ordered_batches(test_x, test_y, args.batch_size)  # noqa: E731

    def dump_batch(x, y):
        M.save_tensor_dict({"images": x, "labels": y, "test_images": test_x}, args.dump_batch)

    n_train = train_x.shape[0]
    steps_per_epoch = math.ceil(n_train / args.batch_size)
    total_steps = args.epochs * steps_per_epoch
    epochs, all_losses = [], []
    warmup_seconds = None
    if args.warmup_steps and not args.eval_only:
        warmup_seconds = warm_up(model, train_x, train_y, test_x, test_y, device, args)
        print(f"warm-up {args.warmup_steps} steps {warmup_seconds:.3f}s", file=sys.stderr, flush=True)
    empty_samples = empty_samples_us(device)
    reset_peak_memory(device)  # the training window: warm-up, data loading and the model's creation excluded
    start = now_ns(device)
    for epoch in range(1, 0 if args.eval_only else args.epochs + 1):
        t0 = now_ns(device)
        loss_sum, correct, step_losses, images, lr = train_epoch(
            model, optimizer, epoch_batches(), device, (epoch - 1) * steps_per_epoch, total_steps, args, hooks,
            dump_batch if args.dump_batch else None)
        train_seconds = seconds_since(t0, device)
        step_losses = step_losses.cpu()
        bad = (~torch.isfinite(step_losses)).nonzero()
        if bad.numel():
            s = int(bad[0])
            raise RunError(f"non-finite training loss ({float(step_losses[s])}) at epoch {epoch} step {s} "
                           f"(global step {(epoch - 1) * steps_per_epoch + s}); no results written")
        all_losses += step_losses.tolist()
        t0 = now_ns(device)
        test_loss, test_acc = evaluate(model, test_source(), device, args)
        eval_seconds = seconds_since(t0, device)
        if not math.isfinite(test_loss):  # finite training losses, yet the last update broke the weights
            raise RunError(f"non-finite test loss ({test_loss}) at epoch {epoch}: the weights diverged; "
                           "no results written")
        rec = {"epoch": epoch, "train_seconds": train_seconds, "eval_seconds": eval_seconds,
               "images_per_second": images / train_seconds, "train_loss": loss_sum.item() / images,
               "train_accuracy": 100.0 * correct.item() / images, "test_loss": test_loss,
               "test_accuracy": test_acc, "lr": lr}
        epochs.append(rec)
        print(progress_line(epoch, args.epochs, rec, seconds_since(start, device)), file=sys.stderr, flush=True)
    total_seconds = seconds_since(start, device)
    training_peak = None if args.eval_only else peak_memory_bytes(device)

    if args.eval_only:
        test_loss, test_acc = evaluate(model, test_source(), device, args)
        final = {"train_loss": None, "train_accuracy": None, "test_loss": test_loss, "test_accuracy": test_acc}
        print(f"eval test_loss {test_loss:.4f} test_acc {test_acc:.2f}%", file=sys.stderr, flush=True)
    else:
        final = {k: epochs[-1][k] for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")}
    logits = None  # --dump-logits: the test logits, then each inference path's output
    if args.dump_logits:
        model.eval()
        with torch.inference_mode(), autocast(device, args.precision):
            logits = {"logits": model(test_x).float()}
    latency, unavailable, concurrency = [], [], []
    try:
        if args.latency_iters:
            latency, unavailable = I.measure_latency(model, test_x, device, args, outputs=logits)
        if args.concurrency:
            concurrency = I.measure_concurrency(model, test_x, device, args)
    except I.InferenceError as err:
        raise RunError(str(err)) from None
    if logits is not None:
        M.save_tensor_dict(logits, args.dump_logits)
    for item in unavailable:
        print(f"{PROG}: note: {item['feature']} skipped: {item['reason']}", file=sys.stderr, flush=True)
    if args.save_weights:
        M.save_weights(model, args.save_weights)

    doc = {
        "schema_version": SCHEMA_VERSION, "complete": True, "language": "python", "model": args.model,
        "param_count": M.param_count(model), "torch_version": torch_version(),
        "cuda_version": torch.version.cuda if device.type == "cuda" else None,
        "cudnn_version": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "device": device_info(device), "backend": backend_flags(), "dataset": dataset,
        "config": {"model": args.model, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                   "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY, "nesterov": True, "schedule": SCHEDULE,
                   "seed": args.seed, "train_limit": args.train_limit, "test_limit": args.test_limit,
                   "device": args.device, "threads": args.threads,
                   "latency_batch_sizes": args.latency_batch_sizes, "latency_iters": args.latency_iters,
                   "latency_warmup": args.latency_warmup, "warmup_steps": args.warmup_steps,
                   "optimizer_impl": args.optimizer_impl,
                   "eval_only": args.eval_only, "load_weights": args.load_weights,
                   "precision": args.precision, "channels_last": args.channels_last,
                   "cudnn_benchmark": args.cudnn_benchmark, "data_pipeline": args.data_pipeline,
                   "workers": args.workers, "inference_paths": args.inference_paths,
                   "concurrency": args.concurrency, "concurrency_iters": args.concurrency_iters},
        "precision_label": precision_label(device, args.precision), "warmup_seconds": warmup_seconds,
        "empty_sample_us": R.empty_sample_entry(empty_samples),
        "epochs": epochs, "total_seconds": total_seconds, "final": final, "latency": latency,
        "concurrency": concurrency, "unavailable": unavailable, "peak_memory_bytes": training_peak,
    }
    if args.record_step_losses:
        doc["step_losses"] = all_losses
    if args.results:
        try:
            write_results_atomic(doc, args.results)
        except OSError as err:
            raise RunError(f"cannot write results to {args.results}: {err.strerror or err}") from None
        except R.ResultsError as err:
            raise RunError(f"cannot write results to {args.results}: {err}") from None
    return doc


def _interrupted(signum, _frame):
    if R.pending_tmp is not None:  # interrupted while writing the results: no half-written file stays
        R.pending_tmp.unlink(missing_ok=True)
    name = signal.Signals(signum).name
    print(f"{PROG}: error: interrupted by {name}; no results written", file=sys.stderr, flush=True)
    os._exit(128 + signum)


def main(argv=None):
    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        run(parse_args(argv))
    except UsageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except RunError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # torch's own errors (out of memory, ...): one line, like C++'s catch-all
        lines = str(err).strip().splitlines()
        print(f"{PROG}: error: {lines[0] if lines else type(err).__name__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
