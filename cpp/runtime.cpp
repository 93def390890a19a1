#include "runtime.h"

#include <ATen/autocast_mode.h>

#include <chrono>

void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

int64_t now_ns(const torch::Device& device) {
  synchronize(device);
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double seconds_since(int64_t t0_ns, const torch::Device& device) { return double(now_ns(device) - t0_ns) / 1e9; }

AutocastScope::AutocastScope(const torch::Device& device, const std::string& precision)
    : device_type_(device.type()),
      prev_enabled_(at::autocast::is_autocast_enabled(device_type_)),
      prev_dtype_(at::autocast::get_autocast_dtype(device_type_)),
      prev_cache_enabled_(at::autocast::is_autocast_cache_enabled()) {
  at::autocast::set_autocast_enabled(device_type_, precision == "bf16");
  at::autocast::set_autocast_dtype(device_type_, at::kBFloat16);
  at::autocast::increment_nesting();
  at::autocast::set_autocast_cache_enabled(true);
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
