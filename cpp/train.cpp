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
#include "model.h"
#include "results.h"

namespace {

const char* const kProg = "bench_train";
constexpr double kMomentum = 0.9;
constexpr double kWeightDecay = 5e-4;
constexpr int kSchemaVersion = 1;
constexpr int kExitRuntimeError = 1;
constexpr int kExitUsageError = 2;

// A bad command line: one line on stderr, exit 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Args {
  std::string model = "resnet18";
  int64_t epochs = 1;
  int64_t batch_size = 128;
  double lr = 0.1;
  std::string data;  // empty: ask `python3 -m bench.data default`
  int64_t train_limit = 0;
  int64_t test_limit = 0;
  std::string device = "auto";
  int64_t seed = 0;
  int64_t threads = 0;
  std::string results;
  std::vector<int64_t> latency_batch_sizes = {1, 32, 128};
  int64_t latency_iters = 100;
  int64_t latency_warmup = 10;
  std::string save_weights;
  std::string load_weights;
  bool eval_only = false;
  bool deterministic = false;
  bool cudnn_benchmark = false;
  bool record_step_losses = false;
  std::string dump_init;
  std::string dump_batch;
  std::string dump_logits;
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

std::vector<int64_t> parse_int_list(const std::string& flag, const std::string& text) {
  std::vector<int64_t> values;
  for (size_t start = 0;;) {
    const size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma - start);
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0') {
      throw UsageError("argument " + flag + ": expected comma-separated integers, got '" + text + "'");
    }
    if (v < 1) throw UsageError("argument " + flag + ": batch sizes must be >= 1, got '" + text + "'");
    values.push_back(v);
    if (comma == std::string::npos) return values;
    start = comma + 1;
  }
}

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
       [&a](const std::string& v) { a.latency_batch_sizes = parse_int_list("--latency-batch-sizes", v); }},
      {"--latency-iters", "N", "100", "timed forwards per batch size, 0 = skip latency",
       [&a](const std::string& v) { a.latency_iters = parse_int("--latency-iters", v); }},
      {"--latency-warmup", "N", "10", "untimed forwards before timing",
       [&a](const std::string& v) { a.latency_warmup = parse_int("--latency-warmup", v); }},
      {"--save-weights", "PATH", "none", "write the weights after training", str(a.save_weights)},
      {"--load-weights", "PATH", "none", "start from these weights (either language's)", str(a.load_weights)},
      {"--eval-only", "", "off", "no training: evaluate and measure latency", on(a.eval_only)},
      {"--deterministic", "", "off", "use deterministic algorithms only", on(a.deterministic)},
      {"--cudnn-benchmark", "", "off", "let cuDNN benchmark convolution algorithms", on(a.cudnn_benchmark)},
      {"--record-step-losses", "", "off", "add every step's loss to the results", on(a.record_step_losses)},
      {"--dump-init", "PATH", "none", "write the weights right after init (torch pickle)", str(a.dump_init)},
      {"--dump-batch", "PATH", "none", "write the first train batch and the test images (torch pickle)", str(a.dump_batch)},
      {"--dump-logits", "PATH", "none", "write the final test logits (torch pickle)", str(a.dump_logits)},
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
  if (!(std::isfinite(args.lr) && args.lr > 0)) {
    throw UsageError("--lr must be a positive number, got " + py_float_str(args.lr));
  }
  if (args.device == "cuda" && !torch::cuda::is_available()) {
    throw UsageError("--device cuda was requested but CUDA is not available");
  }
  return args;
}

// ---- environment -----------------------------------------------------------------------------------

// Test hooks (docs/twins.md): a per-step sleep and a NaN injected at one global step.
struct TestHooks {
  double sleep_per_step_ms = 0;
  int64_t nan_at_step = -1;
};

TestHooks read_test_hooks() {
  TestHooks hooks;
  if (const char* v = std::getenv("BENCH_SLEEP_PER_STEP_MS"); v && *v) {
    hooks.sleep_per_step_ms = parse_float("BENCH_SLEEP_PER_STEP_MS", v);
  }
  if (const char* v = std::getenv("BENCH_NAN_AT_STEP"); v && *v) hooks.nan_at_step = parse_int("BENCH_NAN_AT_STEP", v);
  return hooks;
}

extern "C" void on_signal(int sig) {
  // Only async-signal-safe calls here: write(2) and _exit(2).
  static const char kInt[] = "bench_train: error: interrupted by SIGINT; no results written\n";
  static const char kTerm[] = "bench_train: error: interrupted by SIGTERM; no results written\n";
  if (sig == SIGINT) {
    (void)!::write(STDERR_FILENO, kInt, sizeof kInt - 1);
    ::_exit(130);
  }
  (void)!::write(STDERR_FILENO, kTerm, sizeof kTerm - 1);
  ::_exit(143);
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The last non-empty line of `text` ("" if none).
std::string last_line(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  const size_t nl = text.rfind('\n');
  return nl == std::string::npos ? text : text.substr(nl + 1);
}

// The Python side owns the default data location (download or synthetic fallback): ask it, with the
// source tree on PYTHONPATH. Its stderr (e.g. the synthetic-data warning) is shown on success and
// folded into our one error line on failure.
std::string default_data_dir() {
  const char* old_path = std::getenv("PYTHONPATH");
  const std::string path = std::string(BENCH_SOURCE_DIR) + (old_path && *old_path ? std::string(":") + old_path : "");
  ::setenv("PYTHONPATH", path.c_str(), 1);
  char err_path[] = "/tmp/bench_train_stderr_XXXXXX";
  const int err_fd = ::mkstemp(err_path);
  if (err_fd < 0) throw std::runtime_error(std::string("cannot create a temporary file: ") + std::strerror(errno));
  ::close(err_fd);
  const std::string command = shell_quote(BENCH_PYTHON) + " -m bench.data default 2>" + shell_quote(err_path);
  std::string out;
  int status = -1;
  if (std::FILE* pipe = ::popen(command.c_str(), "r")) {
    char buf[4096];
    while (size_t got = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, got);
    status = ::pclose(pipe);
  }
  std::ifstream err_file(err_path);
  const std::string err((std::istreambuf_iterator<char>(err_file)), std::istreambuf_iterator<char>());
  ::unlink(err_path);
  const std::string dir = last_line(out);
  if (status != 0 || dir.empty()) {
    const std::string cause = last_line(err);
    throw std::runtime_error("no --data given and `python3 -m bench.data default` failed" +
                             (cause.empty() ? std::string() : ": " + cause));
  }
  std::fputs(err.c_str(), stderr);
  return dir;
}

std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      return line.substr(line.find(':') + 2);
    }
  }
  return "cpu";
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

Json peak_memory_bytes(const torch::Device& device) {
#ifdef BENCH_WITH_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
    return stats.allocated_bytes[size_t(c10::CachingAllocator::StatType::AGGREGATE)].peak;
  }
#endif
  return nullptr;
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

// ---- timing ----------------------------------------------------------------------------------------

// Before every clock read, so that queued GPU work is counted where it ran.
void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double seconds_since(int64_t t0_ns) { return double(now_ns() - t0_ns) / 1e9; }

// ---- training --------------------------------------------------------------------------------------

// Linear warmup over the first fifth of the steps, then linear decay to 0.
double lr_at_step(int64_t step, int64_t total, double peak) {
  const int64_t warmup = std::max<int64_t>(1, total / 5);
  if (step < warmup) return peak * double(step + 1) / double(warmup);
  return peak * double(total - step) / double(total - warmup);
}

struct TrainData {
  torch::Tensor images_u8;  // on the device
  torch::Tensor labels;     // on the device
};

struct EpochResult {
  double loss, accuracy, lr;
};

// One epoch; `global_step` counts steps across epochs. Throws on a non-finite loss.
EpochResult train_epoch(ResNet& model, torch::optim::SGD& optimizer, const TrainData& train, int64_t batch_size,
                        at::Generator& gen, const torch::Device& device, int64_t epoch, int64_t& global_step,
                        int64_t total_steps, double peak_lr, const TestHooks& hooks, const Args& args,
                        const torch::Tensor& test_images, std::vector<torch::Tensor>& all_step_losses) {
  model->train();
  const int64_t n = train.images_u8.size(0);
  const int64_t steps = (n + batch_size - 1) / batch_size;
  auto draws = draw_epoch_augmentation(n, gen);
  const auto perm = draws.perm.to(device), crops = draws.crops.to(device), flips = draws.flips.to(device);

  auto loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  auto correct = torch::zeros({}, torch::TensorOptions().dtype(torch::kInt64).device(device));
  std::vector<torch::Tensor> step_losses;
  double lr = peak_lr;
  const int64_t first_step = global_step;
  for (int64_t i = 0; i < steps; ++i, ++global_step) {
    lr = lr_at_step(global_step, total_steps, peak_lr);
    for (auto& group : optimizer.param_groups()) static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);

    const int64_t start = i * batch_size, end = std::min(start + batch_size, n);
    const auto idx = perm.slice(0, start, end);
    const auto x = normalize(random_crop_flip(train.images_u8.index({idx}), crops.slice(0, start, end),
                                              flips.slice(0, start, end)));
    const auto y = train.labels.index({idx});
    if (epoch == 1 && i == 0 && !args.dump_batch.empty()) {
      save_tensor_dict({{"images", x}, {"labels", y}, {"test_images", test_images}}, args.dump_batch);
    }

    const auto logits = model->forward(x);
    auto loss = torch::nn::functional::cross_entropy(logits, y);
    if (global_step == hooks.nan_at_step) loss = loss * std::numeric_limits<double>::quiet_NaN();

    optimizer.zero_grad(/*set_to_none=*/true);
    loss.backward();
    optimizer.step();

    loss_sum += loss.detach() * (end - start);
    correct += (logits.argmax(1) == y).sum();
    step_losses.push_back(loss.detach());
    if (hooks.sleep_per_step_ms > 0) {
      std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(hooks.sleep_per_step_ms));
    }
  }

  // The one host read of the epoch: stop at the first non-finite loss.
  const auto losses = torch::stack(step_losses).to(torch::kCPU, torch::kDouble);
  const auto bad = torch::isfinite(losses).logical_not().nonzero();
  if (bad.size(0) > 0) {
    const int64_t s = bad[0][0].item<int64_t>();
    const double v = losses[s].item<double>();
    const std::string text = std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
    throw std::runtime_error("non-finite training loss (" + text + ") at epoch " + std::to_string(epoch) + " step " +
                             std::to_string(s) + " (global step " + std::to_string(first_step + s) + "); no results written");
  }
  all_step_losses.push_back(losses);
  return {loss_sum.item<double>() / double(n), 100.0 * double(correct.item<int64_t>()) / double(n), lr};
}

// Mean cross-entropy and accuracy (%) over `images` in batches of `batch_size`, in order.
std::pair<double, double> evaluate(ResNet& model, const torch::Tensor& images, const torch::Tensor& labels,
                                   int64_t batch_size) {
  model->eval();
  c10::InferenceMode inference;
  const int64_t n = images.size(0);
  auto loss_sum = torch::zeros({}, images.options().dtype(torch::kFloat32));
  auto correct = torch::zeros({}, images.options().dtype(torch::kInt64));
  namespace F = torch::nn::functional;
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t end = std::min(start + batch_size, n);
    const auto x = images.slice(0, start, end), y = labels.slice(0, start, end);
    const auto logits = model->forward(x);
    loss_sum += F::cross_entropy(logits, y, F::CrossEntropyFuncOptions().reduction(torch::kSum));
    correct += (logits.argmax(1) == y).sum();
  }
  return {loss_sum.item<double>() / double(n), 100.0 * double(correct.item<int64_t>()) / double(n)};
}

// Per batch size: warmup forwards, then `iters` timed forwards (milliseconds).
Json measure_latency(ResNet& model, const torch::Tensor& test_images, const std::vector<int64_t>& batch_sizes,
                     int64_t iters, int64_t warmup, const torch::Device& device) {
  Json::Array out;
  if (iters == 0) return out;
  model->eval();
  c10::InferenceMode inference;
  for (const int64_t bs : batch_sizes) {
    const auto idx = torch::arange(bs, test_images.options().dtype(torch::kInt64)) % test_images.size(0);
    const auto x = test_images.index({idx});
    for (int64_t k = 0; k < warmup; ++k) model->forward(x);
    std::vector<double> samples;
    for (int64_t k = 0; k < iters; ++k) {
      synchronize(device);
      const int64_t t0 = now_ns();
      model->forward(x);
      synchronize(device);
      samples.push_back(double(now_ns() - t0) / 1e6);
    }
    const auto s = summarize_ms(samples);
    out.push_back(Json::object({{"batch_size", bs},
                                {"samples_ms", Json::Array(samples.begin(), samples.end())},
                                {"median_ms", s.median_ms},
                                {"p90_ms", s.p90_ms},
                                {"p99_ms", s.p99_ms},
                                {"mean_ms", s.mean_ms}}));
  }
  return out;
}

// The first line of an exception message (c10 messages can carry more).
std::string first_line(const std::string& message) { return message.substr(0, message.find('\n')); }

int run(int argc, char** argv) {
  const Args args = parse_args(argc, argv);
  const TestHooks hooks = read_test_hooks();
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  if (args.threads > 0) torch::set_num_threads(int(args.threads));
  if (args.deterministic) at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/false);
  at::globalContext().setBenchmarkCuDNN(args.cudnn_benchmark);
  const bool use_cuda = args.device == "cuda" || (args.device == "auto" && torch::cuda::is_available());
  const torch::Device device(use_cuda ? torch::kCUDA : torch::kCPU, use_cuda ? 0 : -1);

  // Data: train images stay uint8 on the device; test images are normalized once.
  const std::string data_dir = args.data.empty() ? default_data_dir() : args.data;
  auto [train_u8, train_labels] = load_split(data_dir, /*train=*/true, args.train_limit);
  auto [test_u8, test_labels] = load_split(data_dir, /*train=*/false, args.test_limit);
  const auto identity = dataset_identity(data_dir, train_u8.size(0), test_u8.size(0));
  const TrainData train{train_u8.to(device), train_labels.to(device)};
  const auto test_images = normalize(test_u8.to(device));
  const auto test_labels_dev = test_labels.to(device);

  // Model: init from the run's one generator, then optional weights, then the device.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(uint64_t(args.seed));
  ResNet model = make_model(args.model);
  init_weights(model, gen);
  if (!args.dump_init.empty()) save_weights(model, args.dump_init);
  if (!args.load_weights.empty()) load_weights(model, args.load_weights, args.model);
  model->to(device);
  int64_t param_count = 0;
  for (const auto& p : model->parameters()) param_count += p.numel();

  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(args.lr)
                                                       .momentum(kMomentum)
                                                       .nesterov(true)
                                                       .weight_decay(kWeightDecay)
                                                       .dampening(0));

  const int64_t n_train = train.images_u8.size(0);
  const int64_t total_steps = args.epochs * ((n_train + args.batch_size - 1) / args.batch_size);
  Json::Array epochs;
  std::vector<torch::Tensor> step_losses;
  Json final_train_loss, final_train_accuracy;
  double test_loss = 0, test_accuracy = 0;

  synchronize(device);
  const int64_t total_t0 = now_ns();
  if (args.eval_only) {
    std::tie(test_loss, test_accuracy) = evaluate(model, test_images, test_labels_dev, args.batch_size);
    std::fprintf(stderr, "eval test_loss %.4f test_acc %.2f%%\n", test_loss, test_accuracy);
  } else {
    int64_t global_step = 0;
    for (int64_t epoch = 1; epoch <= args.epochs; ++epoch) {
      synchronize(device);
      const int64_t t0 = now_ns();
      const auto tr = train_epoch(model, optimizer, train, args.batch_size, gen, device, epoch, global_step, total_steps,
                                  args.lr, hooks, args, test_images, step_losses);
      synchronize(device);
      const double train_seconds = seconds_since(t0);

      synchronize(device);
      const int64_t t1 = now_ns();
      std::tie(test_loss, test_accuracy) = evaluate(model, test_images, test_labels_dev, args.batch_size);
      synchronize(device);
      const double eval_seconds = seconds_since(t1);

      const double elapsed = seconds_since(total_t0);
      const double eta = elapsed / double(epoch) * double(args.epochs - epoch);
      std::fprintf(stderr,
                   "epoch %lld/%lld train %.3fs eval %.3fs loss %.4f acc %.2f%% test_loss %.4f test_acc %.2f%% "
                   "lr %.6f elapsed %.1fs eta %.1fs\n",
                   (long long)epoch, (long long)args.epochs, train_seconds, eval_seconds, tr.loss, tr.accuracy,
                   test_loss, test_accuracy, tr.lr, elapsed, eta);
      epochs.push_back(Json::object({{"epoch", epoch},
                                     {"train_seconds", train_seconds},
                                     {"eval_seconds", eval_seconds},
                                     {"images_per_second", double(n_train) / train_seconds},
                                     {"train_loss", tr.loss},
                                     {"train_accuracy", tr.accuracy},
                                     {"test_loss", test_loss},
                                     {"test_accuracy", test_accuracy},
                                     {"lr", tr.lr}}));
      final_train_loss = tr.loss;
      final_train_accuracy = tr.accuracy;
    }
  }
  synchronize(device);
  const double total_seconds = seconds_since(total_t0);

  if (!args.dump_logits.empty()) {
    model->eval();
    c10::InferenceMode inference;
    save_tensor_dict({{"logits", model->forward(test_images)}}, args.dump_logits);
  }
  Json latency = measure_latency(model, test_images, args.latency_batch_sizes, args.latency_iters,
                                 args.latency_warmup, device);
  if (!args.save_weights.empty()) save_weights(model, args.save_weights);
  if (args.results.empty()) return 0;

  // ---- the results document (schema in docs/twins.md) ----
  const auto& ctx = at::globalContext();
  Json::Array batch_sizes(args.latency_batch_sizes.begin(), args.latency_batch_sizes.end());
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
      {"dataset", Json::object({{"kind", identity.kind},
                                {"path", identity.path},
                                {"sha256", identity.sha256},
                                {"train_records", identity.train_records},
                                {"test_records", identity.test_records}})},
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
                               {"latency_batch_sizes", batch_sizes},
                               {"latency_iters", args.latency_iters},
                               {"latency_warmup", args.latency_warmup},
                               {"optimizer_impl", "per-tensor"},
                               {"eval_only", args.eval_only},
                               {"load_weights", args.load_weights.empty() ? Json() : Json(args.load_weights)}})},
      {"epochs", epochs},
      {"total_seconds", total_seconds},
      {"final", Json::object({{"train_loss", final_train_loss},
                              {"train_accuracy", final_train_accuracy},
                              {"test_loss", test_loss},
                              {"test_accuracy", test_accuracy}})},
      {"latency", latency},
      {"peak_memory_bytes", peak_memory_bytes(device)},
  });
  if (args.record_step_losses) {
    Json::Array losses;
    for (const auto& epoch_losses : step_losses) {
      const double* p = epoch_losses.data_ptr<double>();
      losses.insert(losses.end(), p, p + epoch_losses.numel());
    }
    doc.set("step_losses", losses);
  }
  write_results_atomic(args.results, doc);
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
