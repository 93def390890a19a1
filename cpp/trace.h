// Profiler traces (--trace-steps K, --trace-dir DIR): K training steps and K inference samples per latency batch
// size, recorded by LibTorch's Kineto profiler (torch::autograd::profiler, the library under Python's
// torch.profiler) into Chrome-trace JSON, and the named scopes that suite/traces.py finds them by. Twin of
// bench/trace.py. A scope costs nothing when no trace records (RecordFunction is then inactive).
#pragma once

#include <ATen/record_function.h>
#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>

#include "vocab.h"  // the scopes' names: kTraceStep, kTraceEpochClock, kTraceEvaluate, kTraceInfer

// The profiler, recording from construction until stop(), which waits for the device (the kernels in flight
// belong in the trace) and writes the Chrome trace once. Destroyed while recording (an error on the way), it
// stops without writing.
class Trace {
 public:
  Trace(const torch::Device& device, std::string path);
  ~Trace();
  Trace(const Trace&) = delete;
  Trace& operator=(const Trace&) = delete;
  bool recording() const { return recording_; }
  void stop();

 private:
  torch::Device device_;
  std::string path_;
  bool recording_ = false;
};

// A named scope in `trace` while it records (Python: bench.trace.scope); otherwise nothing.
class TraceScope {
 public:
  TraceScope(const std::string& name, const Trace* trace);
  TraceScope(const TraceScope&) = delete;
  TraceScope& operator=(const TraceScope&) = delete;

 private:
  std::optional<at::RecordFunction> guard_;
};

// now_ns(device) inside a kTraceEpochClock scope: where an epoch's timed window opens or closes, as the trace sees
// it. One call, so that a clock read cannot move away from its mark.
int64_t traced_now_ns(const torch::Device& device, const Trace* trace);
