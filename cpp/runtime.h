// The clock, precision and layout helpers shared by training and inference, and the facts about the run's
// machine and torch that the results record (twin of bench/runtime.py).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "json.h"

// Waits for the device's queued work (a no-op on CPU).
void synchronize(const torch::Device& device);

// The monotonic clock in ns, read only after the device has finished what was queued.
int64_t now_ns(const torch::Device& device);

double seconds_since(int64_t t0_ns, const torch::Device& device);

// Seconds from the OS's start of this process to now, after the device's queued work, or null where
// /proc/self/stat cannot be read (not Linux). Both languages read the same two clocks: the kernel's start time
// (field 22 of /proc/self/stat, clock ticks since boot) and CLOCK_BOOTTIME, so the interpreter's or the
// loader's start-up counts, which no clock read inside the program can see.
Json seconds_since_process_start(const torch::Device& device);

// The process's peak resident memory so far, in bytes (getrusage's ru_maxrss: KiB on Linux, the platform this
// project runs on): the loaded libraries, data, model, every phase; worker threads are in it.
int64_t peak_rss_bytes();

// What a timed sample costs with no work in it (synchronize, read the clock, twice), in µs: the floor under
// every latency sample, recorded so that the two languages' clocks can be compared.
std::vector<double> empty_samples_us(const torch::Device& device);

// Starts a new peak-memory window (CUDA only; the CPU allocator keeps no peak).
void reset_peak_memory(const torch::Device& device);

// The most memory allocated on the device since reset_peak_memory, or null on CPU.
Json peak_memory_bytes(const torch::Device& device);

// What "fp32" really computes: on CUDA, PyTorch's default lets cuDNN run convolutions in TF32 (and cuBLAS
// matmuls, where allowed), in both languages.
std::string precision_label(const torch::Device& device, const std::string& precision);

// torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16", cache_enabled=cache_enabled)
// as a scope: the same calls as Python's context manager on enter and exit (enabled + dtype, nesting, cache
// cleared at nesting 0, previous state restored). Autocast state is thread-local, like Python's.
// Inference passes cache_enabled=false: the cache of cast weights would otherwise make eager skip every cast
// after the first request (which the other paths and a per-request autocast never do), and it is one
// process-wide cache that concurrent threads would share and clear under one another.
class AutocastScope {
 public:
  AutocastScope(const torch::Device& device, const std::string& precision, bool cache_enabled = true);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  at::DeviceType device_type_;
  bool prev_enabled_;
  at::ScalarType prev_dtype_;
  bool prev_cache_enabled_;
};

// A model input in the run's memory layout (a no-op when it already is).
torch::Tensor as_input_layout(const torch::Tensor& x, bool channels_last);

// The first line of an exception's message (torch's can carry more).
std::string first_line(const std::string& message);

// The lines after the first of an exception's message, at most the last kDetailLines, to stderr, before the one
// error line: a compiler's or linker's failure says why only there.
void print_detail(const std::string& message);

// /proc/cpuinfo's model name, or "unknown CPU" (the same text as Python: it keys the report's sections).
std::string cpu_name();

// What the results record about torch, the device and the backend's settings: torch_version, cuda_version,
// cudnn_version, device, backend, precision_label.
Json run_facts(const torch::Device& device, const std::string& precision);
