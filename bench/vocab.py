"""The one vocabulary of torch-api-bench: models, precisions, optimizer implementations, data pipelines,
inference paths, the suite's modes, the training recipe, and every trainer flag with its default, limits, help
and the results key that records it.

The C++ trainer's copy is generated from this module (bench/generate.py writes vocab_table.h into the build
folder, and CMake rewrites it whenever this module changes), and so are both trainers' --help text and the flag
table of docs/trainers.md. Everything else (the Python trainer, the suite, the report, the tests) imports these
names instead of restating them. docs/twins.md, "Adding a flag", says what one new flag takes.
"""

from dataclasses import dataclass

LANGUAGES = ("python", "cpp")
# The trainers' program names, as their messages start ("<prog>: error: ...").
PROGRAMS = {"python": "bench.train", "cpp": "bench_train"}
# Depth of each of the four stages (BasicBlocks per stage) of the CIFAR ResNets.
MODELS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
# Their parameter counts (torchvision's layout with a 3x3 stem and 10 classes): what the tests hold both
# trainers' param_count to.
PARAM_COUNTS = {"resnet18": 11_173_962, "resnet34": 21_282_122}
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")
OPTIMIZER_IMPLS = ("per-tensor", "foreach")
DATA_PIPELINES = ("matched", "idiomatic")
INFERENCE_PATHS = ("eager", "compile", "aoti", "cuda-graph")
# Data-parallel training (bench/dist.py, cpp/dist.cpp): how gradients are averaged across ranks; per device type
# the process group's backend and the feature it gives (each trainer's --help says whether its build has it, and
# a run without it records the feature as unavailable).
GRAD_SYNCS = ("ddp", "flat")
DIST_BACKENDS = {"cpu": "gloo", "cuda": "nccl"}
DIST_FEATURES = {"cpu": "distributed CPU training (gloo)", "cuda": "distributed CUDA training (NCCL)"}
DATASET_KINDS = ("official", "subset", "synthetic")
# The suite's named modes (pytest --modes) and the trainer flags each stands for (docs/twins.md, "Modes").
MODES = {
    "default": (),
    "bf16": ("--precision", "bf16"),
    "channels-last": ("--channels-last",),
    "bf16-cl": ("--precision", "bf16", "--channels-last"),
    "foreach": ("--optimizer-impl", "foreach"),
    "cudnn-benchmark": ("--cudnn-benchmark",),
    "idiomatic": ("--data-pipeline", "idiomatic"),
}
# Untimed full-batch training steps before the first clock read (then one at the partial batch and the
# evaluation shapes). Plans, handles, lazy kernels and cuDNN autotuning happen on a shape's first step; the
# caching allocator reaches its steady pools by the second or third. Three steps cover both at a cost of
# three steps (docs/timing.md, "Warm-up", has the CPU measurement behind the choice).
WARMUP_STEPS = 3

# The training recipe's constants (SGD, and lr_at_step's schedule): the optimizer uses them, config records them.
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
NESTEROV = True
SCHEDULE = "linear-warmup-linear-decay"

# Limits shared by every count: far above any real run, far below what overflows a C++ int64 product
# (epochs x steps, threads x requests) or asks the OS for absurd resources.
MAX_COUNT = 1_000_000
MAX_THREADS = 1024  # torch::set_num_threads(100000) segfaults in both languages: refuse it first
MAX_BATCH = 65_536
MAX_WORKERS = 256
MAX_SEED = 2**63 - 1  # the largest int64: C++ holds the seed as one
MAX_LR = 1000  # already diverges at once (tests/test_bad_input.py relies on it); beyond it, a typo
MAX_DIST_TIMEOUT = 86_400  # a day: a rank silent for longer is gone


@dataclass(frozen=True)
class Flag:
    """One trainer flag. kind: int, float, text, choice, switch, ints (comma-separated ints; an empty text is
    the empty list where the default is empty), names (distinct comma-separated choices). low..high bound an
    int and every item of ints, both included; a float lies in (low, high]: above low (--lr > 0), at most high.
    record: where the results document records the flag: "config" (its value, under `config_key`), another key
    of the document (dotted), or None for a flag that only names a file to write."""

    name: str
    kind: str
    default: object
    help: str
    low: int | None = None
    high: int | None = None
    choices: tuple = ()
    record: str | None = "config"

    @property
    def dest(self):
        """The field of the parsed arguments (Python: flags.Args, C++: struct Args)."""
        return self.name[2:].replace("-", "_")

    @property
    def config_key(self):
        """The key of the results' `config` that records this flag's value, or None."""
        return self.dest if self.record == "config" else None

    @property
    def results_key(self):
        """The dotted key of the results document that records this flag, or None."""
        return f"config.{self.config_key}" if self.config_key else self.record


# Every flag of both trainers, in --help order (and the order of the results' config); bench/flags.py and
# cpp/flags.cpp parse exactly these.
FLAGS = (
    Flag("--model", "choice", "resnet18", "network to train", choices=tuple(MODELS)),
    Flag("--epochs", "int", 1, "training epochs", 1, MAX_COUNT),
    Flag("--batch-size", "int", 128, "training and eval batch size (per rank under torchrun)", 1, MAX_BATCH),
    Flag("--lr", "float", 0.1, "peak learning rate", 0, MAX_LR),
    Flag("--data", "text", None, "CIFAR-10 binary folder; none = the one `python -m bench.prepare default` "
         "prepared", record="dataset.path"),
    Flag("--train-limit", "int", 0, "use the first N training records, 0 = all", 0, MAX_COUNT),
    Flag("--test-limit", "int", 0, "use the first N test records, 0 = all", 0, MAX_COUNT),
    Flag("--device", "choice", "auto", "auto = cuda when available, else cpu", choices=DEVICES),
    Flag("--seed", "int", 0, "seed of the one random generator", 0, MAX_SEED),
    Flag("--repeat", "int", 1, "which repeat of this configuration this run is (the suite's --repeats numbers "
         "them; recorded, changes nothing)", 1, MAX_COUNT),
    Flag("--threads", "int", 0, "CPU intra-op threads, 0 = torch default", 0, MAX_THREADS),
    Flag("--results", "text", None, "write the results JSON here", record=None),
    Flag("--latency-batch-sizes", "ints", (1, 32, 128), "comma-separated inference batch sizes", 1, MAX_BATCH),
    Flag("--latency-iters", "int", 100, "timed forwards per batch size and path, 0 = no latency", 0, MAX_COUNT),
    Flag("--latency-warmup", "int", 10, "untimed forwards before the timed ones", 0, MAX_COUNT),
    Flag("--warmup-steps", "int", WARMUP_STEPS, "untimed training steps before the first timed one, 0 = none",
         0, MAX_COUNT),
    Flag("--save-weights", "text", None, "write the trained weights here", record=None),
    Flag("--load-weights", "text", None, "start from these weights (either language's)"),
    Flag("--eval-only", "switch", False, "no training: evaluate and time latency"),
    Flag("--deterministic", "switch", False, "deterministic algorithms only", record="backend.deterministic"),
    Flag("--cudnn-benchmark", "switch", False, "let cuDNN autotune convolutions"),
    Flag("--record-step-losses", "switch", False, "add every step's loss to the results", record="step_losses"),
    Flag("--dump-init", "text", None, "write the weights right after init", record=None),
    Flag("--dump-batch", "text", None, "write the first augmented batch and the test images", record=None),
    Flag("--dump-logits", "text", None, "write the eval-mode logits of the test images, then each path's",
         record=None),
    Flag("--trace-steps", "int", 0, "profile N training steps of the last epoch from its clock (the whole epoch and "
         "its evaluation when it has no more) and N eager inference samples per latency batch size, 0 = off",
         0, MAX_COUNT),
    Flag("--trace-dir", "text", None, "folder for --trace-steps' Chrome traces (train.json, inference.json)"),
    # Modes (docs/twins.md, "Modes"): how the same computation runs.
    Flag("--precision", "choice", "fp32", "fp32, or bf16 autocast", choices=PRECISIONS),
    Flag("--channels-last", "switch", False, "channels_last weights and inputs"),
    Flag("--optimizer-impl", "choice", "per-tensor", "SGD kernels: one per tensor, or multi-tensor",
         choices=OPTIMIZER_IMPLS),
    Flag("--data-pipeline", "choice", "matched", "matched (the same in both) or each ecosystem's own",
         choices=DATA_PIPELINES),
    Flag("--workers", "int", 2, "DataLoader workers of the idiomatic pipeline", 0, MAX_WORKERS),
    Flag("--inference-paths", "names", ("eager",), "comma-separated latency paths", choices=INFERENCE_PATHS),
    Flag("--aoti-dir", "text", None, "folder of AOTInductor packages (python -m suite.experiments.aoti package "
         "prints it); needed by path aoti"),
    Flag("--concurrency", "ints", (), "comma-separated thread counts for concurrent batch-1 inference",
         1, MAX_THREADS),
    Flag("--concurrency-iters", "int", 50, "timed requests per thread", 1, MAX_COUNT),
    # Data-parallel training, launched by torchrun (docs/distributed.md): read only under its environment.
    Flag("--grad-sync", "choice", "ddp", "gradient averaging across ranks: DDP's buckets overlapped with backward, "
         "or one flat allreduce after it (an ablation)", choices=GRAD_SYNCS),
    Flag("--no-sync-blocks", "int", 0, "timing probe: alternate N steps with gradient sync and N without (no_sync: "
         "the ranks' weights drift apart), 0 = always sync", 0, MAX_COUNT),
    Flag("--dist-timeout", "int", 300, "seconds a rank waits for the others (store, collectives) before the job ends "
         "naming the rank that failed", 1, MAX_DIST_TIMEOUT, record="distributed.timeout_seconds"),
)


# The Chrome traces --trace-steps writes into --trace-dir, and the named scopes in them (bench/trace.py,
# cpp/trace.h; suite/traces.py reads them): a training step (train_epoch's loop body, after its batch is fetched),
# a clock read that opens or closes an epoch's timed window, the evaluation after an epoch, one inference sample,
# one of the untimed warm-up calls before an inference path's samples.
TRACE_FILES = {"train": "train.json", "inference": "inference.json"}
TRACE_STEP, TRACE_EPOCH_CLOCK, TRACE_EVALUATE, TRACE_INFER, TRACE_INFER_WARMUP = (
    "bench::train_step", "bench::epoch_clock", "bench::evaluate", "bench::infer_sample", "bench::infer_warmup")

# The results' process section (bench/process.py, cpp/process.cpp). The environment variables the two processes
# read (torch, its OpenMP/BLAS/oneDNN/CUDA libraries, the loader, glibc's malloc, Python's interpreter): every
# variable starting with one of these is recorded. The BENCH_* test hooks a run records when set. BENCH_PLANT's
# drifts, each of one family (docs/confounders.md); C++ has all but PYTHON_ONLY_PLANTS.
WATCHED_ENV_PREFIXES = ("OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "ONEDNN_", "DNNL_", "ATEN_", "TORCH_",
                        "TORCHINDUCTOR_", "PYTORCH_", "CUDA_", "CUBLAS_", "CUBLASLT_", "CUDNN_", "NCCL_", "NVIDIA_",
                        "KINETO_", "LD_", "MALLOC_", "GLIBC_TUNABLES", "THP_MEM_ALLOC_ENABLE", "PYTHON")
TEST_HOOKS = ("BENCH_SLEEP_PER_STEP_MS", "BENCH_ADD_MS_PER_STEP", "BENCH_NAN_AT_STEP", "BENCH_CRASH_AT_STEP",
              "BENCH_HOOK_RANK", "BENCH_PLANT")
PLANTS = ("cudnn-deterministic", "anomaly", "interop-threads", "worker-threads", "no-grad", "affinity", "thp", "gc",
          "switch-interval")
PYTHON_ONLY_PLANTS = ("gc", "switch-interval")  # C++ has no garbage collector and no interpreter


def aoti_package_name(model, precision, channels_last, batch_size):
    """The file name of one AOTInductor package inside --aoti-dir (C++: aoti_package_name in vocab.h)."""
    return f"{model}-{precision}-{'channels_last' if channels_last else 'contiguous'}-bs{batch_size}.pt2"
