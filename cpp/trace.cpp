#include "trace.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <filesystem>
#include <set>
#include <stdexcept>
#include <utility>

#include "runtime.h"

namespace profiler = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;

Trace::Trace(const torch::Device& device, std::string path) : device_(device), path_(std::move(path)) {
  std::set<ActivityType> activities{ActivityType::CPU};
  if (device.is_cuda()) activities.insert(ActivityType::CUDA);
  const torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::KINETO);
  profiler::prepareProfiler(config, activities);
  profiler::enableProfiler(config, activities);
  recording_ = true;
}

Trace::~Trace() {
  if (recording_) profiler::disableProfiler();
}

void Trace::stop() {
  if (!recording_) return;
  recording_ = false;
  synchronize(device_);  // as Python's profiler does before it stops
  profiler::disableProfiler()->save(path_);
  if (!std::filesystem::is_regular_file(path_)) {  // the exporter only logs a file it cannot write
    throw std::runtime_error("the profiler wrote no trace to " + path_);
  }
}

TraceScope::TraceScope(const std::string& name, const Trace* trace) {
  if (trace == nullptr || !trace->recording()) return;
  guard_.emplace(at::RecordScope::USER_SCOPE);
  if (guard_->isActive()) guard_->before(name);
}

int64_t traced_now_ns(const torch::Device& device, const Trace* trace) {
  TraceScope scope(kTraceEpochClock, trace);
  return now_ns(device);
}
