"""The canonical tiny trainer configuration: one run per (language, mode) serves every correctness check that reads
a trained run (lockstep, traces, parity, the pipeline, start-up, the results' shape), through the session's run
cache (suite.plugin.fixtures: tiny_run, trainer_pair, trainer_run).

ResNet18 on CPU, one thread, deterministic algorithms; 12 training records in batches of 8 (8, 4) for 2 epochs
and 12 test records (8, 4): the warm-up (one full step, then the partial batch's) and both epochs meet partial
training and evaluation batches, and the learning rate changes across epochs. The whole last epoch is traced
(TRACE_STEPS is its steps), with its evaluation and TRACE_STEPS inference samples per latency batch size. Each
run dumps its initial weights, its first batch, its logits and its trained weights into its own folder ("{out}").
"""

from bench.vocab import MODES

MODEL = "resnet18"
TRAIN, TEST, BATCH, EPOCHS = 12, 12, 8, 2
STEPS_PER_EPOCH = -(-TRAIN // BATCH)
TRACE_STEPS = STEPS_PER_EPOCH
LATENCY_SIZES, LATENCY_WARMUP = (1, 4), 2
CONCURRENCY = 2  # threads: concurrent inference, its threads' state (tests/test_process.py)
# The tiny synthetic set (bench.data.synth): (train records, test records, seed).
DATA = (320, 64, 7)
# Each dump: its trainer flag and its file in the run's folder.
FILES = {"init": ("--dump-init", "init.pt"), "batch": ("--dump-batch", "batch.pt"),
         "logits": ("--dump-logits", "logits.pt"), "trained": ("--save-weights", "weights.pt")}
TRACE_DIR = "traces"
NO_LATENCY = ["--latency-iters", "0"]


def sizes(train=TRAIN, test=TEST, batch=BATCH, epochs=EPOCHS):
    """The size flags of a tiny run, with the canonical values unless given."""
    return ["--train-limit", str(train), "--test-limit", str(test), "--batch-size", str(batch), "--epochs", str(epochs)]


def base_args(data, device="cpu", model=MODEL):
    """What every tiny run shares: the model, the data, the device, one thread."""
    return ["--device", device, "--model", model, "--data", str(data), "--threads", "1"]


def argv(data, mode="default", device="cpu", warmup_steps=1, traced=True):
    """The canonical run of `mode`: base_args and sizes, deterministic, seed 3, a short warm-up, every step's loss,
    a little latency and concurrency, the traced last epoch (unless not `traced`) and every dump ("{out}": the run's
    own folder)."""
    latency = ["--latency-iters", "2", "--latency-warmup", str(LATENCY_WARMUP), "--latency-batch-sizes",
               ",".join(map(str, LATENCY_SIZES)), "--concurrency", str(CONCURRENCY), "--concurrency-iters", "2"]
    traces = ["--trace-steps", str(TRACE_STEPS), "--trace-dir", f"{{out}}/{TRACE_DIR}"] if traced else []
    dumps = [x for flag, name in FILES.values() for x in (flag, f"{{out}}/{name}")]
    return [*base_args(data, device), *sizes(), "--lr", "0.05", "--seed", "3", "--deterministic", "--warmup-steps",
            str(warmup_steps), "--record-step-losses", *latency, *traces, *dumps, *MODES[mode]]


def eval_argv(data, weights, device="cpu"):
    """An eval-only run of a weights file (another run's --save-weights) on the canonical test records: its logits
    (--dump-logits) and test metrics (on CUDA with deterministic algorithms: the same kernels for the same shapes in
    both languages). --repeat 3 is recorded and changes nothing."""
    deterministic = ["--deterministic"] if device != "cpu" else []
    return [*base_args(data, device), *NO_LATENCY, *deterministic, "--test-limit", str(TEST), "--eval-only",
            "--load-weights", str(weights), "--dump-logits", f"{{out}}/{FILES['logits'][1]}", "--repeat", "3"]
