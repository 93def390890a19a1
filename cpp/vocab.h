// The one vocabulary of bench_train: models, devices, precisions, optimizer implementations, data pipelines,
// inference paths, the suite's modes, and every flag with its default and limits. Twin of bench/vocab.py;
// tests/test_vocab.py reads this table back from `bench_train --help` and fails when the two differ.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>

// The program name its messages start with ("bench_train: error: ..."; Python: PROGRAMS["cpp"]).
inline constexpr std::string_view kProgram = "bench_train";
inline constexpr std::string_view kLanguage = "cpp";

// Depth of each of the four stages (BasicBlocks per stage) of the CIFAR ResNets.
struct Model {
  std::string_view name;
  std::array<int64_t, 4> stages;
};
inline constexpr std::array kModels = {Model{"resnet18", {2, 2, 2, 2}}, Model{"resnet34", {3, 4, 6, 3}}};
inline constexpr auto kModelNames = [] {
  std::array<std::string_view, kModels.size()> names;
  for (size_t i = 0; i < kModels.size(); ++i) names[i] = kModels[i].name;
  return names;
}();

inline constexpr std::array<std::string_view, 3> kDevices = {"auto", "cpu", "cuda"};
inline constexpr std::array<std::string_view, 2> kPrecisions = {"fp32", "bf16"};
inline constexpr std::array<std::string_view, 2> kOptimizerImpls = {"per-tensor", "foreach"};
inline constexpr std::array<std::string_view, 2> kDataPipelines = {"matched", "idiomatic"};
inline constexpr std::array<std::string_view, 4> kInferencePaths = {"eager", "compile", "aoti", "cuda-graph"};
// Data-parallel training (dist.h; Python: vocab.GRAD_SYNCS, DIST_BACKENDS): how gradients are averaged across ranks,
// and the process group's backend per device type.
inline constexpr std::array<std::string_view, 2> kGradSyncs = {"ddp", "flat"};
inline constexpr std::string_view kCpuBackend = "gloo";
inline constexpr std::string_view kCudaBackend = "nccl";

// The suite's named modes (pytest --modes) and the trainer flags each stands for (docs/twins.md, "Modes").
struct Mode {
  std::string_view name;
  std::string_view flags;  // separated by spaces
};
inline constexpr std::array kModes = {
    Mode{"default", ""},
    Mode{"bf16", "--precision bf16"},
    Mode{"channels-last", "--channels-last"},
    Mode{"bf16-cl", "--precision bf16 --channels-last"},
    Mode{"foreach", "--optimizer-impl foreach"},
    Mode{"cudnn-benchmark", "--cudnn-benchmark"},
    Mode{"idiomatic", "--data-pipeline idiomatic"},
};

// Untimed full-batch training steps before the first clock read (bench/vocab.py says why three). One digit, so
// that --warmup-steps' default text below is made from it.
inline constexpr int64_t kWarmupSteps = 3;
static_assert(kWarmupSteps >= 0 && kWarmupSteps <= 9);
inline constexpr char kWarmupStepsText[] = {char('0' + kWarmupSteps), '\0'};

// Limits shared by every count: far above any real run, far below what overflows an int64 product (epochs x
// steps, threads x requests) or asks the OS for absurd resources.
inline constexpr int64_t kMaxCount = 1'000'000;
inline constexpr int64_t kMaxThreads = 1024;  // torch::set_num_threads(100000) segfaults: refuse it first
inline constexpr int64_t kMaxBatch = 65'536;
inline constexpr int64_t kMaxWorkers = 256;
inline constexpr int64_t kMaxSeed = std::numeric_limits<int64_t>::max();
inline constexpr int64_t kMaxLr = 1000;             // already diverges at once; beyond it, a typo
inline constexpr int64_t kMaxDistTimeout = 86'400;  // a day: a rank silent for longer is gone

// int, float, text, choice, switch, ints (comma-separated ints; an empty text is the empty list where the
// default is empty), names (distinct comma-separated choices).
enum class FlagKind { kInt, kFloat, kText, kChoice, kSwitch, kInts, kNames };

// One flag. low..high bound an int and every item of ints, both included; a float lies in (low, high].
struct Flag {
  std::string_view name;
  FlagKind kind;
  std::string_view default_text;  // what the parser reads when the flag is not given ("": none, off, empty)
  std::string_view help;
  int64_t low = 0;
  int64_t high = 0;
  std::span<const std::string_view> choices = {};
};

// Every flag, in --help order; cpp/flags.cpp parses exactly these.
inline constexpr std::array kFlags = {
    Flag{"--model", FlagKind::kChoice, "resnet18", "network to train", 0, 0, kModelNames},
    Flag{"--epochs", FlagKind::kInt, "1", "training epochs", 1, kMaxCount},
    Flag{"--batch-size", FlagKind::kInt, "128", "training and eval batch size (per rank under torchrun)", 1, kMaxBatch},
    Flag{"--lr", FlagKind::kFloat, "0.1", "peak learning rate", 0, kMaxLr},
    Flag{"--data", FlagKind::kText, "",
         "CIFAR-10 binary folder; none = the one `python -m bench.data default` prepared"},
    Flag{"--train-limit", FlagKind::kInt, "0", "use the first N training records, 0 = all", 0, kMaxCount},
    Flag{"--test-limit", FlagKind::kInt, "0", "use the first N test records, 0 = all", 0, kMaxCount},
    Flag{"--device", FlagKind::kChoice, "auto", "auto = cuda when available, else cpu", 0, 0, kDevices},
    Flag{"--seed", FlagKind::kInt, "0", "seed of the one random generator", 0, kMaxSeed},
    Flag{"--repeat", FlagKind::kInt, "1",
         "which repeat of this configuration this run is (the suite's --repeats numbers them; recorded, changes "
         "nothing)",
         1, kMaxCount},
    Flag{"--threads", FlagKind::kInt, "0", "CPU intra-op threads, 0 = torch default", 0, kMaxThreads},
    Flag{"--results", FlagKind::kText, "", "write the results JSON here"},
    Flag{"--latency-batch-sizes", FlagKind::kInts, "1,32,128", "comma-separated inference batch sizes", 1, kMaxBatch},
    Flag{"--latency-iters", FlagKind::kInt, "100", "timed forwards per batch size and path, 0 = no latency", 0,
         kMaxCount},
    Flag{"--latency-warmup", FlagKind::kInt, "10", "untimed forwards before the timed ones", 0, kMaxCount},
    Flag{"--warmup-steps", FlagKind::kInt, kWarmupStepsText,
         "untimed training steps before the first timed one, 0 = none", 0, kMaxCount},
    Flag{"--save-weights", FlagKind::kText, "", "write the trained weights here"},
    Flag{"--load-weights", FlagKind::kText, "", "start from these weights (either language's)"},
    Flag{"--eval-only", FlagKind::kSwitch, "", "no training: evaluate and time latency"},
    Flag{"--deterministic", FlagKind::kSwitch, "", "deterministic algorithms only"},
    Flag{"--cudnn-benchmark", FlagKind::kSwitch, "", "let cuDNN autotune convolutions"},
    Flag{"--record-step-losses", FlagKind::kSwitch, "", "add every step's loss to the results"},
    Flag{"--dump-init", FlagKind::kText, "", "write the weights right after init"},
    Flag{"--dump-batch", FlagKind::kText, "", "write the first augmented batch and the test images"},
    Flag{"--dump-logits", FlagKind::kText, "", "write the eval-mode logits of the test images, then each path's"},
    Flag{"--trace-steps", FlagKind::kInt, "0",
         "profile K training steps of the last epoch from its clock (the whole epoch and its evaluation when it has "
         "no more) and K eager inference samples per latency batch size, 0 = off",
         0, kMaxCount},
    Flag{"--trace-dir", FlagKind::kText, "", "folder for --trace-steps' Chrome traces (train.json, inference.json)"},
    // Modes (docs/twins.md, "Modes"): how the same computation runs.
    Flag{"--precision", FlagKind::kChoice, "fp32", "fp32, or bf16 autocast", 0, 0, kPrecisions},
    Flag{"--channels-last", FlagKind::kSwitch, "", "channels_last weights and inputs"},
    Flag{"--optimizer-impl", FlagKind::kChoice, "per-tensor", "SGD kernels: one per tensor, or multi-tensor", 0, 0,
         kOptimizerImpls},
    Flag{"--data-pipeline", FlagKind::kChoice, "matched", "matched (the same in both) or each ecosystem's own", 0, 0,
         kDataPipelines},
    Flag{"--workers", FlagKind::kInt, "2", "DataLoader workers of the idiomatic pipeline", 0, kMaxWorkers},
    Flag{"--inference-paths", FlagKind::kNames, "eager", "comma-separated latency paths", 0, 0, kInferencePaths},
    Flag{"--aoti-dir", FlagKind::kText, "",
         "folder of AOTInductor packages (python -m suite.aoti package prints it); needed by path aoti"},
    Flag{"--concurrency", FlagKind::kInts, "", "comma-separated thread counts for concurrent batch-1 inference", 1,
         kMaxThreads},
    Flag{"--concurrency-iters", FlagKind::kInt, "50", "timed requests per thread", 1, kMaxCount},
    // Data-parallel training, launched by torchrun (docs/distributed.md): read only under its environment.
    Flag{"--grad-sync", FlagKind::kChoice, "ddp",
         "gradient averaging across ranks: DDP's buckets overlapped with backward, or one flat allreduce after it (an "
         "ablation)",
         0, 0, kGradSyncs},
    Flag{
        "--no-sync-blocks", FlagKind::kInt, "0",
        "timing probe: alternate N steps with gradient sync and N without (no_sync: the ranks' weights drift apart), 0 "
        "= always sync",
        0, kMaxCount},
    Flag{"--dist-timeout", FlagKind::kInt, "300",
         "seconds a rank waits for the others (store, collectives) before the job ends naming the rank that failed", 1,
         kMaxDistTimeout},
};

// The Chrome traces --trace-steps writes into --trace-dir (trace.h; Python: vocab.TRACE_FILES).
inline constexpr std::string_view kTrainTraceFile = "train.json";
inline constexpr std::string_view kInferenceTraceFile = "inference.json";
// The named scopes in them (Python: vocab.TRACE_STEP ...; suite/traces.py reads them): a training step
// (train_epoch's loop body, after its batch is fetched), a clock read that opens or closes an epoch's timed window,
// the evaluation after an epoch, one inference sample.
inline constexpr const char* kTraceStep = "bench::train_step";
inline constexpr const char* kTraceEpochClock = "bench::epoch_clock";
inline constexpr const char* kTraceEvaluate = "bench::evaluate";
inline constexpr const char* kTraceInfer = "bench::infer_sample";

// The file name of one AOTInductor package inside --aoti-dir (Python: vocab.aoti_package_name).
inline std::string aoti_package_name(std::string_view model, std::string_view precision, bool channels_last,
                                     int64_t batch_size) {
  return std::string(model) + "-" + std::string(precision) + "-" + (channels_last ? "channels_last" : "contiguous") +
         "-bs" + std::to_string(batch_size) + ".pt2";
}
