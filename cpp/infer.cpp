#include "infer.h"

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <barrier>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#ifdef BENCH_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "runtime.h"

torch::Tensor latency_input(const torch::Tensor& test_x, int64_t batch_size, bool channels_last) {
  const auto idx = torch::arange(batch_size, test_x.options().dtype(torch::kInt64)) % test_x.size(0);
  return as_input_layout(test_x.index({idx}), channels_last);
}

namespace {

constexpr int kCudaGraphWarmup = 3;    // forwards on a side stream before the capture
constexpr int kConcurrencyWarmup = 5;  // untimed requests per thread before the barrier

// An inference path: runs the model on one input and returns its output.
using PathFn = std::function<torch::Tensor(const torch::Tensor&)>;

// The monotonic clock in ns without a device sync (Python: time.perf_counter_ns()).
int64_t clock_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// `warmup` untimed calls, then `iters` samples of one call each, in ms (the clock read syncs the device).
std::vector<double> time_samples(const PathFn& fn, const torch::Tensor& x, int64_t iters, int64_t warmup,
                                 const torch::Device& device) {
  for (int64_t k = 0; k < warmup; ++k) fn(x);
  std::vector<double> samples;
  for (int64_t k = 0; k < iters; ++k) {
    const int64_t t0 = now_ns(device);
    fn(x);
    samples.push_back(double(now_ns(device) - t0) / 1e6);
  }
  return samples;
}

Json latency_entry(const std::string& path, int64_t batch_size, const std::vector<double>& samples, Json peak) {
  const auto s = summarize_ms(samples);
  return Json::object({{"path", path},
                       {"batch_size", batch_size},
                       {"samples_ms", Json::Array(samples.begin(), samples.end())},
                       {"median_ms", s.median_ms},
                       {"p90_ms", s.p90_ms},
                       {"p99_ms", s.p99_ms},
                       {"mean_ms", s.mean_ms},
                       {"peak_memory_bytes", std::move(peak)}});
}

// Why this language cannot run `path` on `device` ("" when it can).
std::string unavailable_reason(const std::string& path, const torch::Device& device) {
  if (path == "compile") return "torch.compile has no C++ API";
  if (path == "cuda-graph" && !device.is_cuda()) return "CUDA graphs need a CUDA device";
  return "";
}

// The cached AOTInductor package for this configuration (`python3 -m suite.aoti` builds it on first use),
// holding the run's own weights.
PathFn load_aoti(ResNet& model, int64_t batch_size, const torch::Device& device, const Args& args) {
  std::vector<std::string> command = {"suite.aoti",   "package",
                                      "--model",      args.model,
                                      "--batch-size", std::to_string(batch_size),
                                      "--device",     device.is_cuda() ? "cuda" : "cpu",
                                      "--precision",  args.precision};
  if (args.channels_last) command.push_back("--channels-last");
  const std::string path = python_module_output(command);
  auto loader = std::make_shared<torch::inductor::AOTIModelPackageLoader>(path);
  const auto entries = state_dict(model);
  const std::unordered_map<std::string, torch::Tensor> weights(entries.begin(), entries.end());
  std::unordered_map<std::string, torch::Tensor> constants;
  for (const auto& fqn : loader->get_constant_fqns()) {
    const auto it = weights.find(fqn);
    if (it == weights.end()) {
      throw std::runtime_error("AOTInductor package " + path + " needs " + fqn + ", which " + args.model +
                               " does not have");
    }
    constants.emplace(fqn, it->second);
  }
  loader->load_constants(constants, /*use_inactive=*/false, /*check_full_update=*/true);
  return [loader](const torch::Tensor& x) { return loader->run({x})[0]; };
}

#ifdef BENCH_WITH_CUDA
// One capture of model(static_x) after warm-up forwards on a side stream; calling the result replays it and
// returns the static output (the input is always static_x, a copy of x).
PathFn capture_cuda_graph(ResNet& model, const torch::Tensor& x, const torch::Device& device,
                          const std::string& precision) {
  const auto static_x = x.clone();
  auto graph = std::make_shared<at::cuda::CUDAGraph>();
  torch::Tensor static_out;
  {
    c10::InferenceMode inference;
    // Autocast's cache of cast weights must be off while capturing (torch.cuda.make_graphed_callables
    // refuses it too): casts cached outside the graph would be freed when the autocast region ends.
    AutocastScope autocast(device, precision, /*cache_enabled=*/false);
    c10::cuda::CUDAStreamGuard side(at::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index()));
    synchronize(device);
    for (int k = 0; k < kCudaGraphWarmup; ++k) model->forward(static_x);
    synchronize(device);
    graph->capture_begin();  // captures the current stream: the side stream (never the default one)
    static_out = model->forward(static_x);
    graph->capture_end();
  }
  return [graph, static_out](const torch::Tensor&) {
    graph->replay();
    return static_out;
  };
}
#endif

// The callable that runs `path` on inputs like x: built or captured here, before any timing.
PathFn prepare_path(const std::string& path, ResNet& model, const torch::Tensor& x, const torch::Device& device,
                    const Args& args) {
  if (path == "eager") return [&model](const torch::Tensor& in) { return model->forward(in); };
  if (path == "aoti") return load_aoti(model, x.size(0), device, args);
#ifdef BENCH_WITH_CUDA
  return capture_cuda_graph(model, x, device, args.precision);
#else
  throw std::logic_error("inference path " + path + " needs a CUDA build");  // unavailable_reason says so first
#endif
}

// The start of the one error line when a path cannot be built, compiled or captured.
std::string prepare_failed(const std::string& path, int64_t batch_size) {
  return "cannot prepare inference path " + path + " at batch size " + std::to_string(batch_size) + ": ";
}

// The calling thread's own CUDA stream, made current for it until the scope ends (Python:
// torch.cuda.stream(torch.cuda.Stream(device))); nothing on CPU. The pool holds 32 streams per device:
// more threads than that share them.
class OwnStream {
 public:
  explicit OwnStream(const torch::Device& device) {
#ifdef BENCH_WITH_CUDA
    if (device.is_cuda()) guard_.emplace(at::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index()));
#endif
  }
  void synchronize() {
#ifdef BENCH_WITH_CUDA
    if (guard_) guard_->current_stream().synchronize();
#endif
  }

 private:
#ifdef BENCH_WITH_CUDA
  std::optional<c10::cuda::CUDAStreamGuard> guard_;
#endif
};

// `threads` threads send `iters` timed batch-1 requests each to the shared model: one concurrency entry.
Json concurrent_requests(ResNet& model, const torch::Tensor& x, const torch::Device& device, int64_t threads,
                         int64_t iters, const std::string& precision) {
  std::vector<std::vector<double>> samples(threads);
  std::mutex error_mutex;
  std::string error;  // the first worker's failure
  bool failed = false;
  int64_t start = 0;
  // The barrier's completion runs once all threads have arrived, before any is released: the start time.
  std::barrier barrier(threads, [&start]() noexcept { start = clock_ns(); });

  auto worker = [&](int64_t k) {
    bool arrived = false;
    auto fail = [&](const std::string& what) {
      {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!failed) error = what;
        failed = true;
      }
      if (!arrived) barrier.arrive_and_drop();  // release the threads waiting for this one
    };
    try {
      // Inference mode, autocast and the current stream are thread-local: each thread enters its own.
      c10::InferenceMode inference;
      // Autocast's weight cache is one per process: threads would share it and clear it under one another.
      AutocastScope autocast(device, precision, /*cache_enabled=*/false);
      OwnStream stream(device);
      for (int i = 0; i < kConcurrencyWarmup; ++i) model->forward(x);
      stream.synchronize();
      arrived = true;
      barrier.arrive_and_wait();
      {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (failed) return;  // another thread failed before the barrier; its error is the one reported
      }
      for (int64_t i = 0; i < iters; ++i) {
        const int64_t t0 = clock_ns();
        model->forward(x);
        stream.synchronize();
        samples[k].push_back(double(clock_ns() - t0) / 1e6);
      }
    } catch (const c10::Error& e) {
      fail(e.what_without_backtrace());
    } catch (const std::exception& e) {
      fail(e.what());
    } catch (...) {
      fail("unknown exception");
    }
  };

  synchronize(device);  // the shared input is ready before other streams read it
  std::vector<std::thread> workers;
  for (int64_t k = 0; k < threads; ++k) workers.emplace_back(worker, k);
  for (auto& w : workers) w.join();
  const int64_t end = now_ns(device);  // device synchronized, then read
  if (failed) {
    throw std::runtime_error("concurrent inference with " + std::to_string(threads) +
                             " threads failed in a worker thread: " + error.substr(0, error.find('\n')));
  }
  std::vector<double> all_samples;
  for (const auto& per_thread : samples) all_samples.insert(all_samples.end(), per_thread.begin(), per_thread.end());
  const double seconds = double(end - start) / 1e9;
  const auto s = summarize_ms(all_samples);
  return Json::object({{"threads", threads},
                       {"requests", int64_t(all_samples.size())},
                       {"seconds", seconds},
                       {"images_per_second", double(all_samples.size()) / seconds},
                       {"samples_ms", Json::Array(all_samples.begin(), all_samples.end())},
                       {"median_ms", s.median_ms},
                       {"p90_ms", s.p90_ms},
                       {"p99_ms", s.p99_ms},
                       {"mean_ms", s.mean_ms}});
}

// Sets the intra-op pool size for a scope and restores the previous size (Python: try/finally).
class IntraOpThreadsScope {
 public:
  explicit IntraOpThreadsScope(std::optional<int> threads) : previous_(at::get_num_threads()) {
    if (threads) at::set_num_threads(*threads);
  }
  ~IntraOpThreadsScope() { at::set_num_threads(previous_); }
  IntraOpThreadsScope(const IntraOpThreadsScope&) = delete;
  IntraOpThreadsScope& operator=(const IntraOpThreadsScope&) = delete;

 private:
  int previous_;
};

}  // namespace

Json::Array measure_latency(ResNet& model, const torch::Tensor& test_x, const torch::Device& device, const Args& args,
                            Json::Array& unavailable, std::vector<std::pair<std::string, torch::Tensor>>* outputs) {
  model->eval();
  Json::Array latency;
  for (const auto& path : args.inference_paths) {
    if (const auto reason = unavailable_reason(path, device); !reason.empty()) {
      unavailable.push_back(Json::object({{"feature", "inference path " + path}, {"reason", reason}}));
      continue;
    }
    for (const int64_t bs : args.latency_batch_sizes) {
      const auto x = latency_input(test_x, bs, args.channels_last);
      PathFn fn;
      try {
        fn = prepare_path(path, model, x, device, args);
      } catch (const c10::Error& e) {
        throw std::runtime_error(prepare_failed(path, bs) + e.what_without_backtrace());
      } catch (const std::exception& e) {
        throw std::runtime_error(prepare_failed(path, bs) + e.what());
      }
      reset_peak_memory(device);  // this path's samples only: packaging and capturing excluded
      c10::InferenceMode inference;
      // No cache of cast weights: eager would cast them once for all requests, which the other paths and a
      // per-request autocast never do (bench/runtime.py autocast says more).
      AutocastScope autocast(device, args.precision, /*cache_enabled=*/false);
      const auto samples = time_samples(fn, x, args.latency_iters, args.latency_warmup, device);
      auto peak = peak_memory_bytes(device);
      if (outputs) {  // clone: a graph's output is reused
        outputs->emplace_back(path + ".bs" + std::to_string(bs), fn(x).to(torch::kFloat32).clone());
      }
      latency.push_back(latency_entry(path, bs, samples, std::move(peak)));
    }
  }
  return latency;
}

Json::Array measure_concurrency(ResNet& model, const torch::Tensor& test_x, const torch::Device& device,
                                const Args& args) {
  model->eval();
  const auto x = latency_input(test_x, 1, args.channels_last);
  IntraOpThreadsScope intra_op(device.is_cuda() ? std::nullopt : std::optional<int>(1));
  Json::Array entries;
  for (const int64_t n : args.concurrency) {
    entries.push_back(concurrent_requests(model, x, device, n, args.concurrency_iters, args.precision));
  }
  return entries;
}
