// bench_train: trains a CIFAR-10 ResNet with LibTorch and writes the results document.
// The twin of bench/train.py; docs/twins.md is the contract both follow.
#include <torch/torch.h>
#include <torch/version.h>

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#ifdef BENCH_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#endif

#include "data.h"
#include "infer.h"
#include "model.h"
#include "optim.h"
#include "pipeline.h"
#include "results.h"
#include "runtime.h"
#include "train.h"

namespace {

const char* const kProg = "bench_train";
constexpr double kMomentum = 0.9;
constexpr double kWeightDecay = 5e-4;
constexpr int kSchemaVersion = 3;
constexpr int kExitRuntimeError = 1;
constexpr int kExitUsageError = 2;

// A bad command line: one line on stderr, exit 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- flags -----------------------------------------------------------------------------------------

int64_t parse_int(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0) {
    throw UsageError("argument " + flag + ": invalid int value: '" + text + "'");
  }
  return v;
}

double parse_float(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0') {
    throw UsageError("argument " + flag + ": invalid float value: '" + text + "'");
  }
  return v;
}

// `what` is "model" or "device".
std::string choice(const std::string& what, const std::string& text, const std::vector<std::string>& choices) {
  std::string listed;
  for (const auto& c : choices) {
    if (c == text) return text;
    listed += (listed.empty() ? "" : ", ") + c;
  }
  throw UsageError("unknown " + what + " '" + text + "' (choose from " + listed + ")");
}

void check_at_least(const std::string& flag, int64_t value, int64_t minimum) {
  if (value < minimum) {
    throw UsageError(flag + " must be >= " + std::to_string(minimum) + ", got " + std::to_string(value));
  }
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> items;
  for (size_t start = 0;;) {
    const size_t comma = text.find(',', start);
    items.push_back(text.substr(start, comma - start));
    if (comma == std::string::npos) return items;
    start = comma + 1;
  }
}

// `what` names the values in the error ("batch sizes", "thread counts").
std::vector<int64_t> parse_positive_ints(const std::string& flag, const std::string& text, const std::string& what) {
  std::vector<int64_t> values;
  for (const auto& item : split_commas(text)) {
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0') {
      throw UsageError("argument " + flag + ": expected comma-separated integers, got '" + text + "'");
    }
    values.push_back(v);
  }
  for (const int64_t v : values) {
    if (v < 1) throw UsageError("argument " + flag + ": " + what + " must be >= 1, got '" + text + "'");
  }
  return values;
}

std::vector<std::string> parse_name_list(const std::string& flag, const std::string& text) {
  auto names = split_commas(text);
  for (size_t i = 0; i < names.size(); ++i) {
    bool repeated = false;
    for (size_t j = 0; j < i; ++j) repeated = repeated || names[j] == names[i];
    if (names[i].empty() || repeated) {
      throw UsageError("argument " + flag + ": expected distinct comma-separated names, got '" + text + "'");
    }
  }
  return names;
}

const std::vector<std::string> kPrecisions = {"fp32", "bf16"};
const std::vector<std::string> kOptimizerImpls = {"per-tensor", "foreach"};
const std::vector<std::string> kDataPipelines = {"matched", "idiomatic"};
const std::vector<std::string> kInferencePaths = {"eager", "compile", "aoti", "cuda-graph"};

// Python's str(float): shortest round-trip digits, "1.0" not "1".
std::string py_float_str(double v) {
  char buf[32];
  std::string text(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
  if (std::isfinite(v) && text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
}

struct Flag {
  std::string name;
  std::string metavar;  // empty for switches
  std::string default_text;
  std::string help;
  std::function<void(const std::string&)> set;
};

std::vector<Flag> flag_table(Args& a) {
  auto str = [](std::string& field) { return [&field](const std::string& v) { field = v; }; };
  auto on = [](bool& field) { return [&field](const std::string&) { field = true; }; };
  return {
      {"--model", "{resnet18,resnet34}", "resnet18", "network to train",
       [&a](const std::string& v) { a.model = choice("model", v, {"resnet18", "resnet34"}); }},
      {"--epochs", "N", "1", "training epochs, >= 1", [&a](const std::string& v) { a.epochs = parse_int("--epochs", v); }},
      {"--batch-size", "N", "128", "training and eval batch size, >= 1",
       [&a](const std::string& v) { a.batch_size = parse_int("--batch-size", v); }},
      {"--lr", "X", "0.1", "peak learning rate, > 0", [&a](const std::string& v) { a.lr = parse_float("--lr", v); }},
      {"--data", "DIR", "python3 -m bench.data default", "folder with the CIFAR-10 binary files", str(a.data)},
      {"--train-limit", "N", "0", "use the first N train records, 0 = all",
       [&a](const std::string& v) { a.train_limit = parse_int("--train-limit", v); }},
      {"--test-limit", "N", "0", "use the first N test records, 0 = all",
       [&a](const std::string& v) { a.test_limit = parse_int("--test-limit", v); }},
      {"--device", "{auto,cpu,cuda}", "auto", "auto = cuda when available, else cpu",
       [&a](const std::string& v) { a.device = choice("device", v, {"auto", "cpu", "cuda"}); }},
      {"--seed", "N", "0", "seed of the one random generator", [&a](const std::string& v) { a.seed = parse_int("--seed", v); }},
      {"--threads", "N", "0", "CPU intra-op threads, 0 = library default",
       [&a](const std::string& v) { a.threads = parse_int("--threads", v); }},
      {"--results", "PATH", "none", "write the results JSON here", str(a.results)},
      {"--latency-batch-sizes", "LIST", "1,32,128", "comma-separated inference batch sizes",
       [&a](const std::string& v) { a.latency_batch_sizes = parse_positive_ints("--latency-batch-sizes", v, "batch sizes"); }},
      {"--latency-iters", "N", "100", "timed forwards per batch size, 0 = skip latency",
       [&a](const std::string& v) { a.latency_iters = parse_int("--latency-iters", v); }},
      {"--latency-warmup", "N", "10", "untimed forwards before timing",
       [&a](const std::string& v) { a.latency_warmup = parse_int("--latency-warmup", v); }},
      {"--warmup-steps", "N", std::to_string(kWarmupSteps), "untimed training steps before the first timed one, 0 = none",
       [&a](const std::string& v) { a.warmup_steps = parse_int("--warmup-steps", v); }},
      {"--save-weights", "PATH", "none", "write the weights after training", str(a.save_weights)},
      {"--load-weights", "PATH", "none", "start from these weights (either language's)", str(a.load_weights)},
      {"--eval-only", "", "off", "no training: evaluate and measure latency", on(a.eval_only)},
      {"--deterministic", "", "off", "use deterministic algorithms only", on(a.deterministic)},
      {"--cudnn-benchmark", "", "off", "let cuDNN benchmark convolution algorithms", on(a.cudnn_benchmark)},
      {"--record-step-losses", "", "off", "add every step's loss to the results", on(a.record_step_losses)},
      {"--dump-init", "PATH", "none", "write the weights right after init (torch pickle)", str(a.dump_init)},
      {"--dump-batch", "PATH", "none", "write the first train batch and the test images (torch pickle)", str(a.dump_batch)},
      {"--dump-logits", "PATH", "none", "write the final test logits (torch pickle)", str(a.dump_logits)},
      // Modes (docs/twins.md, "Modes"): how the same computation runs.
      {"--precision", "{fp32,bf16}", "fp32", "fp32, or bf16 autocast",
       [&a](const std::string& v) { a.precision = choice("precision", v, kPrecisions); }},
      {"--channels-last", "", "off", "channels_last weights and inputs", on(a.channels_last)},
      {"--optimizer-impl", "{per-tensor,foreach}", "per-tensor", "SGD kernels: one per tensor or multi-tensor",
       [&a](const std::string& v) { a.optimizer_impl = choice("optimizer implementation", v, kOptimizerImpls); }},
      {"--data-pipeline", "{matched,idiomatic}", "matched", "matched (same in both) or each ecosystem's own",
       [&a](const std::string& v) { a.data_pipeline = choice("data pipeline", v, kDataPipelines); }},
      {"--workers", "N", "2", "DataLoader workers of the idiomatic pipeline",
       [&a](const std::string& v) { a.workers = parse_int("--workers", v); }},
      {"--inference-paths", "LIST", "eager", "comma-separated latency paths: eager,compile,aoti,cuda-graph",
       [&a](const std::string& v) {
         a.inference_paths = parse_name_list("--inference-paths", v);
         for (const auto& path : a.inference_paths) choice("inference path", path, kInferencePaths);
       }},
      {"--concurrency", "LIST", "none", "comma-separated thread counts for concurrent batch-1 inference",
       [&a](const std::string& v) {
         a.concurrency = v.empty() ? std::vector<int64_t>{} : parse_positive_ints("--concurrency", v, "thread counts");
       }},
      {"--concurrency-iters", "N", "50", "timed requests per thread",
       [&a](const std::string& v) { a.concurrency_iters = parse_int("--concurrency-iters", v); }},
  };
}

void print_help(const std::vector<Flag>& flags) {
  std::printf("usage: %s [options]\n\nTrain a CIFAR-10 ResNet with LibTorch (the twin of bench.train).\n\noptions:\n", kProg);
  std::printf("  %-36s %s\n", "-h, --help", "show this help and exit");
  for (const auto& f : flags) {
    const std::string left = f.name + (f.metavar.empty() ? "" : " " + f.metavar);
    std::printf("  %-36s %s (default: %s)\n", left.c_str(), f.help.c_str(), f.default_text.c_str());
  }
}

// Accepts `--flag value` and `--flag=value`; exits 0 after --help.
Args parse_args(int argc, char** argv) {
  Args args;
  const auto flags = flag_table(args);
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      print_help(flags);
      std::exit(0);
    }
    std::optional<std::string> value;
    if (const size_t eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    }
    const Flag* flag = nullptr;
    for (const auto& f : flags) {
      if (f.name == arg) flag = &f;
    }
    if (flag == nullptr) throw UsageError("unrecognized arguments: " + std::string(argv[i]));
    if (flag->metavar.empty()) {
      if (value) throw UsageError("argument " + arg + ": ignored explicit argument '" + *value + "'");
    } else if (!value) {
      if (i + 1 >= argc) throw UsageError("argument " + arg + ": expected one argument");
      value = argv[++i];
    }
    flag->set(value.value_or(""));
  }
  check_at_least("--epochs", args.epochs, 1);
  check_at_least("--batch-size", args.batch_size, 1);
  check_at_least("--train-limit", args.train_limit, 0);
  check_at_least("--test-limit", args.test_limit, 0);
  check_at_least("--threads", args.threads, 0);
  check_at_least("--latency-iters", args.latency_iters, 0);
  check_at_least("--latency-warmup", args.latency_warmup, 0);
  check_at_least("--warmup-steps", args.warmup_steps, 0);
  check_at_least("--workers", args.workers, 0);
  check_at_least("--concurrency-iters", args.concurrency_iters, 1);
  if (!(std::isfinite(args.lr) && args.lr > 0)) {
    throw UsageError("--lr must be a positive number, got " + py_float_str(args.lr));
  }
  if (args.device == "cuda" && !torch::cuda::is_available()) {
    throw UsageError("--device cuda was requested but CUDA is not available");
  }
  return args;
}

// ---- environment -----------------------------------------------------------------------------------

// Test hooks (README "Test hooks"): a per-step sleep, a NaN loss or an abort at one global step.
struct TestHooks {
  double sleep_per_step_ms = 0;
  int64_t nan_at_step = -1;
  int64_t crash_at_step = -1;
};

TestHooks read_test_hooks() {
  TestHooks hooks;
  if (const char* v = std::getenv("BENCH_SLEEP_PER_STEP_MS"); v && *v) {
    hooks.sleep_per_step_ms = parse_float("BENCH_SLEEP_PER_STEP_MS", v);
  }
  if (const char* v = std::getenv("BENCH_NAN_AT_STEP"); v && *v) hooks.nan_at_step = parse_int("BENCH_NAN_AT_STEP", v);
  if (const char* v = std::getenv("BENCH_CRASH_AT_STEP"); v && *v) {
    hooks.crash_at_step = parse_int("BENCH_CRASH_AT_STEP", v);
  }
  return hooks;
}

extern "C" void on_signal(int sig) {
  // Only async-signal-safe calls here: unlink(2), write(2) and _exit(2).
  if (pending_tmp()[0] != '\0') ::unlink(pending_tmp());  // interrupted while writing the results
  static const char kInt[] = "bench_train: error: interrupted by SIGINT; no results written\n";
  static const char kTerm[] = "bench_train: error: interrupted by SIGTERM; no results written\n";
  if (sig == SIGINT) {
    (void)!::write(STDERR_FILENO, kInt, sizeof kInt - 1);
    ::_exit(130);
  }
  (void)!::write(STDERR_FILENO, kTerm, sizeof kTerm - 1);
  ::_exit(143);
}

// The Python side owns the default data location (download or synthetic fallback): ask it.
std::string default_data_dir() {
  try {
    return python_module_output({"bench.data", "default"});
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(std::string("no --data given and ") + e.what());
  }
}

// /proc/cpuinfo's model name, or "unknown CPU" (the same text as Python: it keys the report's sections).
std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      std::string name = line.substr(line.find(':') + 1);
      const size_t first = name.find_first_not_of(" \t"), last = name.find_last_not_of(" \t\r");
      return first == std::string::npos ? "unknown CPU" : name.substr(first, last - first + 1);
    }
  }
  return "unknown CPU";
}

std::string device_name(const torch::Device& device) {
#ifdef BENCH_WITH_CUDA
  if (device.is_cuda()) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, device.index() < 0 ? 0 : device.index()) == cudaSuccess) return prop.name;
    return "cuda";
  }
#endif
  return cpu_name();
}

// torch.version.cuda (the CUDA this torch was built with) on CUDA runs, else null.
Json cuda_version(const torch::Device& device) {
  if (!device.is_cuda()) return nullptr;
  const long v = at::detail::getCUDAHooks().versionCUDART();
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}

// torch.backends.cudnn.version() on CUDA runs, else null.
Json cudnn_version(const torch::Device& device) {
  if (!device.is_cuda() || !torch::cuda::cudnn_is_available()) return nullptr;
  return int64_t(at::detail::getCUDAHooks().versionRuntimeCuDNN());
}

// ---- training --------------------------------------------------------------------------------------

// Linear warmup over the first fifth of the steps, then linear decay to 0.
double lr_at_step(int64_t step, int64_t total, double peak) {
  const int64_t warmup = std::max<int64_t>(1, total / 5);
  if (step < warmup) return peak * double(step + 1) / double(warmup);
  return peak * double(total - step) / double(total - warmup);
}

// SGD with the recipe's momentum, Nesterov and weight decay: LibTorch's per-tensor loop, or ForeachSGD.
std::unique_ptr<torch::optim::SGD> make_optimizer(ResNet& model, const Args& args) {
  const auto options =
      torch::optim::SGDOptions(args.lr).momentum(kMomentum).nesterov(true).weight_decay(kWeightDecay).dampening(0);
  if (args.optimizer_impl == "foreach") return std::make_unique<ForeachSGD>(model->parameters(), options);
  return std::make_unique<torch::optim::SGD>(model->parameters(), options);
}

struct EpochResult {
  torch::Tensor loss_sum;     // float32 scalar on the device
  torch::Tensor correct;      // int64 scalar on the device
  torch::Tensor step_losses;  // [steps] on the device
  int64_t images;
  double lr;
};

// One SGD step at learning rate `lr`; returns the loss and the logits on the device, without waiting.
std::pair<torch::Tensor, torch::Tensor> train_step(ResNet& model, torch::optim::SGD& optimizer, const torch::Tensor& x,
                                                   const torch::Tensor& y, double lr, const torch::Device& device,
                                                   const std::string& precision) {
  for (auto& group : optimizer.param_groups()) static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
  torch::Tensor logits, loss;
  {
    AutocastScope autocast(device, precision);
    logits = model->forward(x);
    loss = torch::nn::functional::cross_entropy(logits, y);
  }
  optimizer.zero_grad(/*set_to_none=*/true);
  loss.backward();
  optimizer.step();
  return {loss, logits};
}

// One epoch over `batches`; returns device tensors, the number of images and the last lr. Nothing here
// waits for the device. `dump_batch` (may be empty) sees the first batch of the run.
EpochResult train_epoch(ResNet& model, torch::optim::SGD& optimizer, BatchSource& batches, const torch::Device& device,
                        int64_t first_step, int64_t total_steps, const Args& args, const TestHooks& hooks,
                        const std::function<void(const torch::Tensor&, const torch::Tensor&)>& dump_batch) {
  model->train();
  auto loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  auto correct = torch::zeros({}, torch::TensorOptions().dtype(torch::kInt64).device(device));
  std::vector<torch::Tensor> step_losses;
  int64_t images = 0;
  double lr = args.lr;
  for (int64_t i = 0;; ++i) {
    auto batch = batches.next();
    if (!batch) break;
    const int64_t step = first_step + i;
    lr = lr_at_step(step, total_steps, args.lr);
    auto x = as_input_layout(batch->images, args.channels_last);
    const auto& y = batch->labels;
    if (dump_batch && step == 0) dump_batch(x, y);
    if (step == hooks.crash_at_step) std::abort();  // a trainer crash, as a segfault or OOM kill would be
    if (step == hooks.nan_at_step) x = x * std::numeric_limits<double>::quiet_NaN();  // as a diverging run
    const auto [loss, logits] = train_step(model, optimizer, x, y, lr, device, args.precision);
    loss_sum += loss.detach() * y.size(0);
    correct += (logits.argmax(1) == y).sum();
    step_losses.push_back(loss.detach());
    images += y.size(0);
    if (hooks.sleep_per_step_ms > 0) {
      std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(hooks.sleep_per_step_ms));
    }
  }
  return {loss_sum, correct, torch::stack(step_losses), images, lr};
}

// Mean cross-entropy and accuracy (%) over `batches`, one host read at the end.
std::pair<double, double> evaluate(ResNet& model, BatchSource& batches, const torch::Device& device, const Args& args) {
  model->eval();
  auto loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  auto correct = torch::zeros({}, torch::TensorOptions().dtype(torch::kInt64).device(device));
  int64_t n = 0;
  c10::InferenceMode inference;
  AutocastScope autocast(device, args.precision);
  namespace F = torch::nn::functional;
  while (auto batch = batches.next()) {
    const auto logits = model->forward(as_input_layout(batch->images, args.channels_last));
    loss_sum += F::cross_entropy(logits, batch->labels, F::CrossEntropyFuncOptions().reduction(torch::kSum));
    correct += (logits.argmax(1) == batch->labels).sum();
    n += batch->labels.size(0);
  }
  return {loss_sum.item<double>() / double(n), 100.0 * double(correct.item<int64_t>()) / double(n)};
}

// The batch sizes a pass over n records in batches of batch_size produces, each once: `full_steps` times the
// full batch, then the partial last batch if there is one.
std::vector<int64_t> warmup_shapes(int64_t n, int64_t batch_size, int64_t full_steps) {
  std::vector<int64_t> shapes(size_t(full_steps), std::min(n, batch_size));
  if (n > batch_size && n % batch_size != 0) shapes.push_back(n % batch_size);
  return shapes;
}

// Untimed training steps at every shape the timed run will see (args.warmup_steps full batches, the partial
// last batch), then evaluation at the full and partial eval batch, in the run's precision and layout:
// cuDNN/cuBLAS handles, lazy kernel loading, per-shape plans (autotuning with --cudnn-benchmark) and the
// allocator's pools are ready before the first clock read. The run stays as if none had happened: the
// batches come from a generator of their own, the optimizer is a throwaway one, the weights and BatchNorm
// buffers are restored. Returns the seconds it took.
double warm_up(ResNet& model, const torch::Tensor& train_x, const torch::Tensor& train_y, const torch::Tensor& test_x,
               const torch::Tensor& test_y, const torch::Device& device, const Args& args) {
  const int64_t t0 = now_ns(device);
  std::vector<torch::Tensor> saved;
  for (const auto& entry : state_dict(model)) saved.push_back(entry.second.clone());
  const auto optimizer = make_optimizer(model, args);
  // Not the run's generator: its draws stay untouched.
  auto generator = at::make_generator<at::CPUGeneratorImpl>(uint64_t(args.seed));
  const auto x_u8 = train_x.slice(0, 0, args.batch_size).to(device);
  const auto y = train_y.slice(0, 0, args.batch_size).to(device);
  model->train();
  for (const int64_t n : warmup_shapes(train_x.size(0), args.batch_size, args.warmup_steps)) {
    const auto batch = MatchedBatches(x_u8.slice(0, 0, n), y.slice(0, 0, n), generator, n).next();
    train_step(model, *optimizer, as_input_layout(batch->images, args.channels_last), batch->labels, args.lr, device,
               args.precision);
  }
  for (const int64_t n : warmup_shapes(test_x.size(0), args.batch_size, 1)) {
    OrderedBatches batches(test_x.slice(0, 0, n), test_y.slice(0, 0, n), n);
    evaluate(model, batches, device, args);
  }
  {
    torch::NoGradGuard no_grad;
    const auto entries = state_dict(model);
    for (size_t i = 0; i < entries.size(); ++i) entries[i].second.copy_(saved[i]);
  }
  model->zero_grad(/*set_to_none=*/true);
  return seconds_since(t0, device);
}

// The first line of an exception message (c10 messages can carry more).
std::string first_line(const std::string& message) { return message.substr(0, message.find('\n')); }

// Python's str(float) of a loss for the non-finite message: nan, inf, -inf.
std::string nonfinite_str(double v) { return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf"); }

int run(int argc, char** argv) {
  const Args args = parse_args(argc, argv);
  const TestHooks hooks = read_test_hooks();
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  const bool use_cuda = args.device == "cuda" || (args.device == "auto" && torch::cuda::is_available());
  const torch::Device device(use_cuda ? torch::kCUDA : torch::kCPU, use_cuda ? 0 : -1);
  if (args.threads > 0) torch::set_num_threads(int(args.threads));
  if (args.deterministic) at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/false);
  at::globalContext().setBenchmarkCuDNN(args.cudnn_benchmark);

  // Data: the test images are normalized once and stay on the device (evaluation, latency).
  const std::string data_dir = args.data.empty() ? default_data_dir() : args.data;
  auto [train_x, train_y] = load_split(data_dir, /*train=*/true, args.train_limit);
  auto [test_x, test_y] = load_split(data_dir, /*train=*/false, args.test_limit);
  const auto dataset = dataset_identity(data_dir, train_x.size(0), test_x.size(0));
  if (args.data_pipeline == "matched") {  // uint8, augmented per batch on the device
    train_x = train_x.to(device);
    train_y = train_y.to(device);
  }
  test_x = as_input_layout(normalize(test_x.to(device)), args.channels_last);
  test_y = test_y.to(device);

  // Model: init from the run's one generator, then optional weights, then the device.
  auto generator = at::make_generator<at::CPUGeneratorImpl>(uint64_t(args.seed));
  ResNet model = make_model(args.model);
  init_weights(model, generator);
  if (!args.dump_init.empty()) save_weights(model, args.dump_init);
  if (!args.load_weights.empty()) load_weights(model, args.load_weights, args.model);
  model->to(device);
  if (args.channels_last) to_channels_last(model);
  const auto optimizer = make_optimizer(model, args);

  std::function<std::unique_ptr<BatchSource>()> epoch_batches, test_source;
  if (args.data_pipeline == "idiomatic") {
    auto loaders = std::make_shared<IdiomaticLoaders>(data_dir, device, args);
    epoch_batches = [loaders] { return loaders->train_batches(); };
    test_source = [loaders] { return loaders->test_batches(); };
  } else {
    epoch_batches = [&] { return std::make_unique<MatchedBatches>(train_x, train_y, generator, args.batch_size); };
    test_source = [&] { return std::make_unique<OrderedBatches>(test_x, test_y, args.batch_size); };
  }

  std::function<void(const torch::Tensor&, const torch::Tensor&)> dump_batch;
  if (!args.dump_batch.empty()) {
    dump_batch = [&](const torch::Tensor& x, const torch::Tensor& y) {
      save_tensor_dict({{"images", x}, {"labels", y}, {"test_images", test_x}}, args.dump_batch);
    };
  }

  const int64_t n_train = train_x.size(0);
  const int64_t steps_per_epoch = (n_train + args.batch_size - 1) / args.batch_size;
  const int64_t total_steps = args.epochs * steps_per_epoch;
  Json::Array epochs, all_losses;
  Json warmup_seconds;
  if (args.warmup_steps > 0 && !args.eval_only) {
    const double seconds = warm_up(model, train_x, train_y, test_x, test_y, device, args);
    std::fprintf(stderr, "warm-up %lld steps %.3fs\n", (long long)args.warmup_steps, seconds);
    warmup_seconds = seconds;
  }
  const auto empty_samples = empty_samples_us(device);
  reset_peak_memory(device);  // the training window: warm-up, data loading and the model's creation excluded
  const int64_t start = now_ns(device);
  for (int64_t epoch = 1; epoch <= (args.eval_only ? 0 : args.epochs); ++epoch) {
    int64_t t0 = now_ns(device);
    auto batches = epoch_batches();
    const auto tr = train_epoch(model, *optimizer, *batches, device, (epoch - 1) * steps_per_epoch, total_steps, args,
                                hooks, dump_batch);
    const double train_seconds = seconds_since(t0, device);
    const auto step_losses = tr.step_losses.to(torch::kCPU, torch::kDouble);
    const auto bad = torch::isfinite(step_losses).logical_not().nonzero();
    if (bad.size(0) > 0) {
      const int64_t s = bad[0][0].item<int64_t>();
      throw std::runtime_error("non-finite training loss (" + nonfinite_str(step_losses[s].item<double>()) +
                               ") at epoch " + std::to_string(epoch) + " step " + std::to_string(s) + " (global step " +
                               std::to_string((epoch - 1) * steps_per_epoch + s) + "); no results written");
    }
    const double* losses = step_losses.data_ptr<double>();
    all_losses.insert(all_losses.end(), losses, losses + step_losses.numel());
    t0 = now_ns(device);
    auto test_batches = test_source();
    const auto [test_loss, test_acc] = evaluate(model, *test_batches, device, args);
    const double eval_seconds = seconds_since(t0, device);
    if (!std::isfinite(test_loss)) {  // finite training losses, yet the last update broke the weights
      throw std::runtime_error("non-finite test loss (" + nonfinite_str(test_loss) + ") at epoch " +
                               std::to_string(epoch) + ": the weights diverged; no results written");
    }
    const double train_loss = tr.loss_sum.item<double>() / double(tr.images);
    const double train_acc = 100.0 * double(tr.correct.item<int64_t>()) / double(tr.images);
    epochs.push_back(Json::object({{"epoch", epoch},
                                   {"train_seconds", train_seconds},
                                   {"eval_seconds", eval_seconds},
                                   {"images_per_second", double(tr.images) / train_seconds},
                                   {"train_loss", train_loss},
                                   {"train_accuracy", train_acc},
                                   {"test_loss", test_loss},
                                   {"test_accuracy", test_acc},
                                   {"lr", tr.lr}}));
    const double elapsed = seconds_since(start, device);
    const double eta = elapsed / double(epoch) * double(args.epochs - epoch);
    std::fprintf(stderr,
                 "epoch %lld/%lld train %.3fs eval %.3fs loss %.4f acc %.2f%% test_loss %.4f test_acc %.2f%% "
                 "lr %.6f elapsed %.1fs eta %.1fs\n",
                 (long long)epoch, (long long)args.epochs, train_seconds, eval_seconds, train_loss, train_acc,
                 test_loss, test_acc, tr.lr, elapsed, eta);
  }
  const double total_seconds = seconds_since(start, device);
  const Json training_peak = args.eval_only ? Json() : peak_memory_bytes(device);

  Json final_metrics;
  if (args.eval_only) {
    auto test_batches = test_source();
    const auto [test_loss, test_acc] = evaluate(model, *test_batches, device, args);
    final_metrics = Json::object(
        {{"train_loss", nullptr}, {"train_accuracy", nullptr}, {"test_loss", test_loss}, {"test_accuracy", test_acc}});
    std::fprintf(stderr, "eval test_loss %.4f test_acc %.2f%%\n", test_loss, test_acc);
  } else {
    final_metrics = Json::object({{"train_loss", epochs.back().get("train_loss")},
                                  {"train_accuracy", epochs.back().get("train_accuracy")},
                                  {"test_loss", epochs.back().get("test_loss")},
                                  {"test_accuracy", epochs.back().get("test_accuracy")}});
  }
  std::vector<std::pair<std::string, torch::Tensor>> logits;  // --dump-logits: the test logits, then each path's
  if (!args.dump_logits.empty()) {
    model->eval();
    c10::InferenceMode inference;
    AutocastScope autocast(device, args.precision);
    logits.emplace_back("logits", model->forward(test_x).to(torch::kFloat32));
  }
  Json::Array latency, unavailable;
  if (args.latency_iters > 0) {
    latency = measure_latency(model, test_x, device, args, unavailable, args.dump_logits.empty() ? nullptr : &logits);
  }
  Json::Array concurrency;
  if (!args.concurrency.empty()) concurrency = measure_concurrency(model, test_x, device, args);
  if (!args.dump_logits.empty()) save_tensor_dict(logits, args.dump_logits);
  for (const auto& item : unavailable) {
    std::fprintf(stderr, "%s: note: %s skipped: %s\n", kProg, item.get("feature").str().c_str(),
                 item.get("reason").str().c_str());
  }
  if (!args.save_weights.empty()) save_weights(model, args.save_weights);
  if (args.results.empty()) return 0;

  // ---- the results document (schema in docs/twins.md) ----
  const auto& ctx = at::globalContext();
  int64_t param_count = 0;
  for (const auto& p : model->parameters()) param_count += p.numel();
  Json doc = Json::object({
      {"schema_version", kSchemaVersion},
      {"complete", true},
      {"language", "cpp"},
      {"model", args.model},
      {"param_count", param_count},
      {"torch_version", std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                            std::to_string(TORCH_VERSION_PATCH)},
      {"cuda_version", cuda_version(device)},
      {"cudnn_version", cudnn_version(device)},
      {"device", Json::object({{"type", device.is_cuda() ? "cuda" : "cpu"},
                               {"name", device_name(device)},
                               {"threads", int64_t(torch::get_num_threads())}})},
      {"backend", Json::object({{"cudnn_benchmark", ctx.benchmarkCuDNN()},
                                {"cudnn_allow_tf32", ctx.allowTF32CuDNN()},
                                {"matmul_allow_tf32", ctx.allowTF32CuBLAS()},
                                {"deterministic", ctx.deterministicAlgorithms()}})},
      {"dataset", Json::object({{"kind", dataset.kind},
                                {"path", dataset.path},
                                {"sha256", dataset.sha256},
                                {"train_records", dataset.train_records},
                                {"test_records", dataset.test_records}})},
      {"config", Json::object({{"model", args.model},
                               {"epochs", args.epochs},
                               {"batch_size", args.batch_size},
                               {"lr", args.lr},
                               {"momentum", kMomentum},
                               {"weight_decay", kWeightDecay},
                               {"nesterov", true},
                               {"schedule", "linear-warmup-linear-decay"},
                               {"seed", args.seed},
                               {"train_limit", args.train_limit},
                               {"test_limit", args.test_limit},
                               {"device", args.device},
                               {"threads", args.threads},
                               {"latency_batch_sizes", Json::Array(args.latency_batch_sizes.begin(),
                                                                   args.latency_batch_sizes.end())},
                               {"latency_iters", args.latency_iters},
                               {"latency_warmup", args.latency_warmup},
                               {"warmup_steps", args.warmup_steps},
                               {"optimizer_impl", args.optimizer_impl},
                               {"eval_only", args.eval_only},
                               {"load_weights", args.load_weights.empty() ? Json() : Json(args.load_weights)},
                               {"precision", args.precision},
                               {"channels_last", args.channels_last},
                               {"cudnn_benchmark", args.cudnn_benchmark},
                               {"data_pipeline", args.data_pipeline},
                               {"workers", args.workers},
                               {"inference_paths", Json::Array(args.inference_paths.begin(), args.inference_paths.end())},
                               {"concurrency", Json::Array(args.concurrency.begin(), args.concurrency.end())},
                               {"concurrency_iters", args.concurrency_iters}})},
      {"precision_label", precision_label(device, args.precision)},
      {"warmup_seconds", warmup_seconds},
      {"empty_sample_us", empty_sample_entry(empty_samples)},
      {"epochs", epochs},
      {"total_seconds", total_seconds},
      {"final", final_metrics},
      {"latency", latency},
      {"concurrency", concurrency},
      {"unavailable", unavailable},
      {"peak_memory_bytes", training_peak},
  });
  if (args.record_step_losses) doc.set("step_losses", all_losses);
  write_results_atomic(doc, args.results);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: error: %s\n", kProg, first_line(e.what()).c_str());
    return kExitUsageError;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "%s: error: %s\n", kProg, first_line(e.what_without_backtrace()).c_str());
    return kExitRuntimeError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", kProg, first_line(e.what()).c_str());
    return kExitRuntimeError;
  }
}
