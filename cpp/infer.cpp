#include "infer.h"

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <filesystem>
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

#include "process.h"
#include "results.h"
#include "runtime.h"
#include "trace.h"
#include "vocab.h"

namespace {

constexpr int kCudaGraphWarmup = 3;    // forwards on a side stream before the capture
constexpr int kConcurrencyWarmup = 5;  // untimed requests per thread before the barrier

// An inference path: runs the model on one input and returns its output.
using PathFn = std::function<torch::Tensor(const torch::Tensor&)>;

std::string aoti_package_path(const InferOptions& options, int64_t batch_size) {
  const auto name = aoti_package_name(options.model, options.precision, options.channels_last, batch_size);
  return (std::filesystem::path(options.aoti_dir) / name).string();
}

// Why this language cannot run `path` on `device` ("" when it can).
}  // namespace

void check_aoti_packages(const InferOptions& options, const torch::Device& device) {
  const auto& paths = options.inference_paths;
  if (std::find(paths.begin(), paths.end(), "aoti") == paths.end() || options.latency_iters == 0) return;
  for (const int64_t bs : options.latency_batch_sizes) {
    const std::string path = aoti_package_path(options, bs);
    if (std::filesystem::is_regular_file(path)) continue;
    std::string sizes;
    for (const int64_t b : options.latency_batch_sizes) sizes += c10::str(sizes.empty() ? "" : ",", b);
    throw std::runtime_error(
        c10::str("AOTInductor package ", path, " not found: build it with `python -m suite.experiments.aoti ",
                 "package --model ", options.model, " --device ", device.is_cuda() ? "cuda" : "cpu", " --precision ",
                 options.precision, options.channels_last ? " --channels-last" : "", " --batch-sizes ", sizes,
                 "` and pass the folder it prints as --aoti-dir"));
  }
}

torch::Tensor latency_input(const torch::Tensor& test_x, int64_t batch_size, bool channels_last) {
  const auto idx = torch::arange(batch_size, test_x.options().dtype(torch::kInt64)) % test_x.size(0);
  return as_input_layout(test_x.index({idx}), channels_last);
}

namespace {

// The monotonic clock in ns without a device sync (Python: time.perf_counter_ns()).
int64_t clock_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// `warmup` untimed calls, then `iters` samples of one call each, in ms (the clock read syncs the device). With a
// `trace`, each call is a scope named with `label` (a sample's also with the autograd mode it runs in), entered and
// left outside the clock reads: the traced pass runs this same code (trace_inference).
std::vector<double> time_samples(const PathFn& fn, const torch::Tensor& x, int64_t iters, int64_t warmup,
                                 const torch::Device& device, const Trace* trace = nullptr,
                                 const std::string& label = "") {
  std::string warmup_scope, sample_scope;
  if (trace) {
    warmup_scope = c10::str(kTraceInferWarmup, " ", label);
    sample_scope = c10::str(kTraceInfer, " ", label, " mode=", autograd_mode());
  }
  for (int64_t k = 0; k < warmup; ++k) {
    TraceScope scope(warmup_scope, trace);
    fn(x);
  }
  std::vector<double> samples;
  for (int64_t k = 0; k < iters; ++k) {
    int64_t t0, t1;
    {
      TraceScope scope(sample_scope, trace);
      t0 = now_ns(device);
      fn(x);
      t1 = now_ns(device);
    }
    samples.push_back(double(t1 - t0) / 1e6);
  }
  return samples;
}

Json latency_entry(const std::string& path, int64_t batch_size, const std::vector<double>& samples, Json peak) {
  Json entry = Json::object({{"path", path}, {"batch_size", batch_size}, {"samples_ms", samples}});
  entry.update(summarize_ms(samples));
  entry.set("peak_memory_bytes", std::move(peak));
  return entry;
}

std::string unavailable_reason(const std::string& path, const torch::Device& device) {
  if (path == "compile") return "torch.compile has no C++ API";
  if (path == "cuda-graph" && !device.is_cuda()) return "CUDA graphs need a CUDA device";
  return "";
}

// The AOTInductor package for this configuration from --aoti-dir, given the run's own weights.
PathFn load_aoti(ResNet& model, int64_t batch_size, const InferOptions& options) {
  const std::string path = aoti_package_path(options, batch_size);
  auto loader = std::make_shared<torch::inductor::AOTIModelPackageLoader>(path);
  const auto entries = state_dict(model);
  const std::unordered_map<std::string, torch::Tensor> weights(entries.begin(), entries.end());
  std::unordered_map<std::string, torch::Tensor> constants;
  for (const auto& fqn : loader->get_constant_fqns()) {
    const auto it = weights.find(fqn);
    if (it == weights.end()) {
      throw std::runtime_error(
          c10::str("AOTInductor package ", path, " needs ", fqn, ", which ", options.model, " does not have"));
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
    // No cache of cast weights while capturing (torch.cuda.make_graphed_callables refuses it too): casts
    // cached outside the graph would be freed when the autocast region ends.
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
                    const InferOptions& options) {
  if (path == "eager") return [&model](const torch::Tensor& in) { return model->forward(in); };
  if (path == "aoti") return load_aoti(model, x.size(0), options);
#ifdef BENCH_WITH_CUDA
  return capture_cuda_graph(model, x, device, options.precision);
#else
  throw std::logic_error("inference path " + path + " needs a CUDA build");  // unavailable_reason says so first
#endif
}

// prepare_path, with any failure as the run's one error line.
PathFn prepare_path_or_fail(const std::string& path, ResNet& model, const torch::Tensor& x, const torch::Device& device,
                            const InferOptions& options) {
  const std::string failed = c10::str("cannot prepare inference path ", path, " at batch size ", x.size(0), ": ");
  try {
    return prepare_path(path, model, x, device, options);
  } catch (const c10::Error& e) {
    print_detail(e.what_without_backtrace());
    throw std::runtime_error(failed + first_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    print_detail(e.what());
    throw std::runtime_error(failed + first_line(e.what()));
  }
}

}  // namespace

std::pair<Json::Array, Json::Array> measure_latency(ResNet& model, const torch::Tensor& test_x,
                                                    const torch::Device& device, const InferOptions& options,
                                                    NamedTensors* outputs) {
  model->eval();
  Json::Array latency, unavailable;
  for (const auto& path : options.inference_paths) {
    if (const auto reason = unavailable_reason(path, device); !reason.empty()) {
      unavailable.push_back(Json::object({{"feature", "inference path " + path}, {"reason", reason}}));
      continue;
    }
    for (const int64_t bs : options.latency_batch_sizes) {
      const auto x = latency_input(test_x, bs, options.channels_last);
      const PathFn fn = prepare_path_or_fail(path, model, x, device, options);
      reset_peak_memory(device);  // this path's samples only: packaging and capturing excluded
      c10::InferenceMode inference;
      AutocastScope autocast(device, options.precision, /*cache_enabled=*/false);
      std::vector<double> samples;
      {
        const auto window = process_window("latency", c10::str("latency ", path, " bs=", bs));
        samples = time_samples(fn, x, options.latency_iters, options.latency_warmup, device);
      }
      auto peak = peak_memory_bytes(device);
      if (outputs) {  // clone: a graph's output is reused
        outputs->emplace_back(c10::str(path, ".bs", bs), fn(x).to(torch::kFloat32).clone());
      }
      latency.push_back(latency_entry(path, bs, samples, std::move(peak)));
    }
  }
  return {latency, unavailable};
}

void trace_inference(ResNet& model, const torch::Tensor& test_x, const torch::Device& device,
                     const InferOptions& options, int64_t samples, const std::string& path) {
  Trace trace(device, path);
  model->eval();
  for (const auto& p : options.inference_paths) {
    if (!unavailable_reason(p, device).empty()) continue;  // compile among them: nothing to compare with
    for (const int64_t bs : options.latency_batch_sizes) {
      const auto x = latency_input(test_x, bs, options.channels_last);
      const PathFn fn = prepare_path_or_fail(p, model, x, device, options);
      c10::InferenceMode inference;
      AutocastScope autocast(device, options.precision, /*cache_enabled=*/false);
      const auto window = process_window("latency", c10::str("traced ", p, " bs=", bs));
      time_samples(fn, x, samples, options.latency_warmup, device, &trace, c10::str("bs=", bs, " path=", p));
    }
  }
  trace.stop();
}

namespace {

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

// Reads the clock when the last request thread reaches the barrier, before any is released.
struct MarkStart {
  int64_t* start;
  void operator()() noexcept { *start = clock_ns(); }
};

// What the request threads share (Python: the Barrier and the errors list): the barrier that releases them
// together, the start time its completion reads, and the first failure.
class RequestBarrier {
 public:
  explicit RequestBarrier(int64_t threads) : threads_(threads), barrier_(threads, MarkStart{&start_}) {}
  int64_t threads() const { return threads_; }

  // Waits for every thread; false when another thread failed before the barrier (this one then stops: the
  // error reported is that thread's).
  bool arrive_and_wait() {
    barrier_.arrive_and_wait();
    std::lock_guard<std::mutex> lock(mutex_);
    return !failed_;
  }
  // Keeps the first failure; a thread that fails before the barrier drops out of it, releasing the others.
  void fail(const std::string& what, bool arrived) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!failed_) error_ = what;
      failed_ = true;
    }
    if (!arrived) barrier_.arrive_and_drop();
  }
  bool failed() const { return failed_; }  // read after the threads are joined
  const std::string& error() const { return error_; }
  int64_t start() const { return start_; }

 private:
  int64_t threads_;
  int64_t start_ = 0;
  std::barrier<MarkStart> barrier_;
  std::mutex mutex_;
  std::string error_;
  bool failed_ = false;
};

// One request thread: warm-up requests, the barrier, then `iters` timed batch-1 requests into `samples`.
void request_worker(ResNet& model, const torch::Tensor& x, const torch::Device& device, const std::string& precision,
                    int64_t iters, RequestBarrier& barrier, std::vector<double>& samples) {
  bool arrived = false;
  try {
    // Inference mode, autocast and the current stream are thread-local: each thread enters its own.
    c10::InferenceMode inference;
    AutocastScope autocast(device, precision, /*cache_enabled=*/false);
    OwnStream stream(device);
    process_worker_thread(c10::str("concurrency ", barrier.threads()));
    for (int i = 0; i < kConcurrencyWarmup; ++i) model->forward(x);
    stream.synchronize();
    arrived = true;
    if (!barrier.arrive_and_wait()) return;
    for (int64_t i = 0; i < iters; ++i) {
      const int64_t t0 = clock_ns();
      model->forward(x);
      stream.synchronize();
      samples.push_back(double(clock_ns() - t0) / 1e6);
    }
  } catch (const c10::Error& e) {
    barrier.fail(e.what_without_backtrace(), arrived);
  } catch (const std::exception& e) {
    barrier.fail(e.what(), arrived);
  } catch (...) {
    barrier.fail("unknown exception", arrived);
  }
}

// `threads` threads send `iters` timed batch-1 requests each to the shared model: one concurrency entry.
Json concurrent_requests(ResNet& model, const torch::Tensor& x, const torch::Device& device, int64_t threads,
                         int64_t iters, const std::string& precision) {
  std::vector<std::vector<double>> samples(threads);
  RequestBarrier barrier(threads);
  synchronize(device);  // the shared input is ready before other streams read it
  std::vector<std::thread> workers;
  int64_t end;
  {
    const auto window = process_window("concurrency", c10::str("concurrency ", threads));
    for (int64_t k = 0; k < threads; ++k) {
      workers.emplace_back(request_worker, std::ref(model), std::cref(x), std::cref(device), std::cref(precision),
                           iters, std::ref(barrier), std::ref(samples[k]));
    }
    for (auto& w : workers) w.join();
    end = now_ns(device);  // device synchronized, then read
  }
  if (barrier.failed()) {
    throw std::runtime_error(c10::str("concurrent inference with ", threads,
                                      " threads failed in a worker thread: ", first_line(barrier.error())));
  }
  std::vector<double> all_samples;
  for (const auto& per_thread : samples) all_samples.insert(all_samples.end(), per_thread.begin(), per_thread.end());
  const double seconds = double(end - barrier.start()) / 1e9;
  Json entry = Json::object({{"threads", threads},
                             {"requests", int64_t(all_samples.size())},
                             {"seconds", seconds},
                             {"images_per_second", double(all_samples.size()) / seconds},
                             {"samples_ms", all_samples}});
  entry.update(summarize_ms(all_samples));
  return entry;
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

Json::Array measure_concurrency(ResNet& model, const torch::Tensor& test_x, const torch::Device& device,
                                const InferOptions& options) {
  model->eval();
  const auto x = latency_input(test_x, 1, options.channels_last);
  IntraOpThreadsScope intra_op(device.is_cuda() ? std::nullopt : std::optional<int>(1));
  Json::Array entries;
  for (const int64_t n : options.concurrency) {
    entries.push_back(concurrent_requests(model, x, device, n, options.concurrency_iters, options.precision));
  }
  return entries;
}
