#include "runtime.h"

#include <ATen/autocast_mode.h>

#ifdef BENCH_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#endif

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

int64_t now_ns(const torch::Device& device) {
  synchronize(device);
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double seconds_since(int64_t t0_ns, const torch::Device& device) { return double(now_ns(device) - t0_ns) / 1e9; }

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

namespace {

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

}  // namespace

std::string python_module_output(const std::vector<std::string>& module_and_args) {
  std::string shown = "python3 -m", quoted;
  for (const auto& arg : module_and_args) {
    shown.append(" ").append(arg);
    quoted.append(" ").append(shell_quote(arg));
  }
  const char* old_path = std::getenv("PYTHONPATH");
  const std::string path = std::string(BENCH_SOURCE_DIR) + (old_path && *old_path ? std::string(":") + old_path : "");
  char err_path[] = "/tmp/bench_train_stderr_XXXXXX";
  const int err_fd = ::mkstemp(err_path);
  if (err_fd < 0) throw std::runtime_error(std::string("cannot create a temporary file: ") + std::strerror(errno));
  ::close(err_fd);
  const std::string command = "PYTHONPATH=" + shell_quote(path) + " " + shell_quote(BENCH_PYTHON) + " -m" + quoted +
                              " 2>" + shell_quote(err_path);
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
  const std::string result = last_line(out);
  if (status != 0 || result.empty()) {
    const std::string cause = last_line(err);
    throw std::runtime_error("`" + shown + "` failed" + (cause.empty() ? std::string() : ": " + cause));
  }
  std::fputs(err.c_str(), stderr);
  return result;
}
