#include "runtime.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#ifdef BENCH_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#endif

#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>

void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

int64_t now_ns(const torch::Device& device) {
  synchronize(device);
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double seconds_since(int64_t t0_ns, const torch::Device& device) { return double(now_ns(device) - t0_ns) / 1e9; }

Json seconds_since_process_start(const torch::Device& device) {
  synchronize(device);
#ifdef __linux__
  std::ifstream in("/proc/self/stat");
  const std::string stat{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  const size_t name_end = stat.rfind(')');  // the name may hold spaces and ')'
  if (name_end == std::string::npos) return nullptr;
  std::istringstream fields(stat.substr(name_end + 1));
  std::string field;
  for (int i = 3; i <= 22; ++i) fields >> field;  // fields 3 (state) to 22 (starttime)
  int64_t start_ticks = 0;
  if (!fields || std::from_chars(field.data(), field.data() + field.size(), start_ticks).ec != std::errc()) {
    return nullptr;
  }
  timespec now{};
  ::clock_gettime(CLOCK_BOOTTIME, &now);
  return double(now.tv_sec) + double(now.tv_nsec) / 1e9 - double(start_ticks) / double(::sysconf(_SC_CLK_TCK));
#else
  return nullptr;
#endif
}

int64_t peak_rss_bytes() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return int64_t(usage.ru_maxrss) * 1024;
}

namespace {
constexpr int kEmptySamples = 100;  // empty samples recorded per run (after kEmptySamplesWarmup untimed ones)
constexpr int kEmptySamplesWarmup = 10;
}  // namespace

std::vector<double> empty_samples_us(const torch::Device& device) {
  std::vector<double> samples;
  for (int i = 0; i < kEmptySamplesWarmup + kEmptySamples; ++i) {
    const int64_t t0 = now_ns(device);
    const int64_t t1 = now_ns(device);
    if (i >= kEmptySamplesWarmup) samples.push_back(double(t1 - t0) / 1e3);
  }
  return samples;
}

void reset_peak_memory(const torch::Device& device) {
#ifdef BENCH_WITH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.index() < 0 ? 0 : device.index());
#endif
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

namespace {
// The device's compute capability major (0 without CUDA support in this build).
int cuda_major_capability(const torch::Device& device) {
#ifdef BENCH_WITH_CUDA
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, device.index() < 0 ? 0 : device.index()) == cudaSuccess) return prop.major;
#endif
  (void)device;
  return 0;
}
}  // namespace

std::string precision_label(const torch::Device& device, const std::string& precision) {
  if (precision != "fp32") return precision + " autocast";
  const auto& ctx = at::globalContext();
  if (!device.is_cuda() || !ctx.allowTF32CuDNN() || cuda_major_capability(device) < 8) return "fp32";  // TF32: sm80+
  return std::string("fp32 (TF32 convolutions") + (ctx.allowTF32CuBLAS() ? " and matmuls)" : ")");
}

AutocastScope::AutocastScope(const torch::Device& device, const std::string& precision, bool cache_enabled)
    : device_type_(device.type()),
      prev_enabled_(at::autocast::is_autocast_enabled(device_type_)),
      prev_dtype_(at::autocast::get_autocast_dtype(device_type_)),
      prev_cache_enabled_(at::autocast::is_autocast_cache_enabled()) {
  at::autocast::set_autocast_enabled(device_type_, precision == "bf16");
  at::autocast::set_autocast_dtype(device_type_, at::kBFloat16);
  at::autocast::increment_nesting();
  at::autocast::set_autocast_cache_enabled(cache_enabled);
}

AutocastScope::~AutocastScope() {
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(device_type_, prev_enabled_);
  at::autocast::set_autocast_dtype(device_type_, prev_dtype_);
  at::autocast::set_autocast_cache_enabled(prev_cache_enabled_);
}

torch::Tensor as_input_layout(const torch::Tensor& x, bool channels_last) {
  return channels_last ? x.contiguous(torch::MemoryFormat::ChannelsLast) : x;
}

std::string first_line(const std::string& message) { return message.substr(0, message.find('\n')); }

constexpr size_t kDetailLines = 40;  // of a long error message (a compiler's output): its cause, not the whole log

void print_detail(const std::string& message) {
  std::vector<std::string> lines;
  std::istringstream in(message);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  while (!lines.empty() && lines.back().find_first_not_of(" \t\r") == std::string::npos) lines.pop_back();
  const size_t from = std::max<size_t>(1, lines.size() > kDetailLines ? lines.size() - kDetailLines : 0);
  for (size_t i = from; i < lines.size(); ++i) std::fprintf(stderr, "  | %s\n", lines[i].c_str());
}

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

namespace {

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
  return c10::str(v / 1000, ".", v % 1000 / 10);
}

// torch.backends.cudnn.version() on CUDA runs, else null.
Json cudnn_version(const torch::Device& device) {
  if (!device.is_cuda() || !torch::cuda::cudnn_is_available()) return nullptr;
  return int64_t(at::detail::getCUDAHooks().versionRuntimeCuDNN());
}

}  // namespace

Json run_facts(const torch::Device& device, const std::string& precision) {
  const auto& ctx = at::globalContext();
  return Json::object({
      {"torch_version", c10::str(TORCH_VERSION_MAJOR, ".", TORCH_VERSION_MINOR, ".", TORCH_VERSION_PATCH)},
      {"cuda_version", cuda_version(device)},
      {"cudnn_version", cudnn_version(device)},
      {"device", Json::object({{"type", device.is_cuda() ? "cuda" : "cpu"},
                               {"name", device_name(device)},
                               {"threads", int64_t(torch::get_num_threads())}})},
      {"backend", Json::object({{"cudnn_benchmark", ctx.benchmarkCuDNN()},
                                {"cudnn_allow_tf32", ctx.allowTF32CuDNN()},
                                {"matmul_allow_tf32", ctx.allowTF32CuBLAS()},
                                {"deterministic", ctx.deterministicAlgorithms()}})},
      {"precision_label", precision_label(device, precision)},
  });
}
