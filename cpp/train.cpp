// bench_train: trains a CIFAR-10 ResNet with LibTorch and writes the results document.
// The twin of bench/train.py (docs/twins.md is the contract both follow). `run` at the end is the recipe; each
// of its steps is a function above it, in the order the steps run. It never starts another program.
#include <torch/torch.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "data.h"
#include "dist.h"
#include "flags.h"
#include "infer.h"
#include "model.h"
#include "optim.h"
#include "pipeline.h"
#include "process.h"
#include "results.h"
#include "runtime.h"
#include "trace.h"
#include "vocab.h"
#include "weights.h"

namespace {

constexpr int kExitRuntimeError = 1;
constexpr int kExitUsageError = 2;
constexpr int kExitSignalBase = 128;       // killed by signal N: exit 128 + N, as a shell reports it
constexpr int64_t kMaxHookMs = 3'600'000;  // an hour per step: far above any test's slowdown

// ---- test hooks and the options of the parts -------------------------------------------------------

// Test hooks (docs/gate.md, "Test hooks"): a per-step sleep, a per-step time added to the record without waiting, a NaN
// loss or an abort at one global step; in a distributed run on every rank, or on the rank BENCH_HOOK_RANK names
// (BENCH_PLANT: process.cpp). The results' process section records every hook that was set.
struct TestHooks {
  double sleep_per_step_ms = 0;
  double add_ms_per_step = 0;
  int64_t nan_at_step = -1;
  int64_t crash_at_step = -1;
};

// The hooks set in the environment; a malformed value is a usage error, as a bad flag is.
TestHooks read_test_hooks() {
  constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
  TestHooks hooks;
  if (const char* v = std::getenv("BENCH_HOOK_RANK"); v && *v) {
    const char* rank = std::getenv("RANK");
    if (parse_int("BENCH_HOOK_RANK", v, 0, kInt64Max) != (rank && *rank ? std::atoll(rank) : 0)) {
      return hooks;  // the hooks act on another rank
    }
  }
  // Unset, empty or "0": none (a time's own limit excludes 0, as --lr's does).
  if (const char* v = std::getenv("BENCH_SLEEP_PER_STEP_MS"); v && *v && std::string_view(v) != "0") {
    hooks.sleep_per_step_ms = parse_float("BENCH_SLEEP_PER_STEP_MS", v, 0, kMaxHookMs);
  }
  if (const char* v = std::getenv("BENCH_ADD_MS_PER_STEP"); v && *v && std::string_view(v) != "0") {
    hooks.add_ms_per_step = parse_float("BENCH_ADD_MS_PER_STEP", v, 0, kMaxHookMs);
  }
  if (const char* v = std::getenv("BENCH_NAN_AT_STEP"); v && *v) {
    hooks.nan_at_step = parse_int("BENCH_NAN_AT_STEP", v, 0, kInt64Max);
  }
  if (const char* v = std::getenv("BENCH_CRASH_AT_STEP"); v && *v) {
    hooks.crash_at_step = parse_int("BENCH_CRASH_AT_STEP", v, 0, kInt64Max);
  }
  return hooks;
}

// BENCH_ADD_MS_PER_STEP's time for `steps` training steps: added to the recorded times, never waited.
double added_seconds(const TestHooks& hooks, int64_t steps) { return hooks.add_ms_per_step * double(steps) / 1000; }

InferOptions infer_options(const Args& args) {
  return {args.model,         args.precision,      args.channels_last, args.inference_paths,   args.latency_batch_sizes,
          args.latency_iters, args.latency_warmup, args.concurrency,   args.concurrency_iters, args.aoti_dir};
}

PipelineOptions pipeline_options(const Args& args) {
  return {args.batch_size, args.workers, args.seed, args.train_limit, args.test_limit};
}

// ---- setting up: backend, data, model, batches -----------------------------------------------------

// The run's device (a distributed run's GPU is its LOCAL_RANK), and the process-wide settings its flags ask for.
torch::Device setup_backend(const Args& args, const Job* job) {
  const bool use_cuda = args.device == "cuda" || (args.device == "auto" && torch::cuda::is_available());
  const torch::Device device(use_cuda ? torch::kCUDA : torch::kCPU,
                             use_cuda ? c10::DeviceIndex(job ? gpu_index(*job) : 0) : c10::DeviceIndex(-1));
  if (use_cuda) set_cuda_device(device);
  if (args.threads > 0) torch::set_num_threads(int(args.threads));
  if (args.deterministic) at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/false);
  at::globalContext().setBenchmarkCuDNN(args.cudnn_benchmark);
  return device;
}

// The run's records. Training images stay uint8 (on the device for the matched pipeline); the test images are
// normalized once and stay on the device in the run's layout (evaluation, latency).
struct Data {
  std::string folder;
  torch::Tensor train_x, train_y, test_x, test_y;
};

Data load_data(const Args& args, const torch::Device& device) {
  const auto [folder, note] = args.data.empty() ? find_default_data() : std::pair{args.data, std::string()};
  if (!note.empty()) std::fprintf(stderr, "%s: note: %s\n", kProgram.data(), note.c_str());
  auto [train_x, train_y] = load_split(folder, /*train=*/true, args.train_limit);
  auto [test_x, test_y] = load_split(folder, /*train=*/false, args.test_limit);
  if (args.data_pipeline == "matched") {  // uint8, augmented per batch on the device
    train_x = train_x.to(device);
    train_y = train_y.to(device);
  }
  test_x = as_input_layout(normalize(test_x.to(device)), args.channels_last);
  return {folder, train_x, train_y, test_x, test_y.to(device)};
}

// (the dataset's identity, the seconds it took): its SHA-256 over the six files, read after the start-up's clock.
// Hashing is side work, not the API's start-up: each language hashes with another implementation (OpenSSL /
// cpp/sha256.cpp), at another speed (docs/twins.md, "Start-up").
std::pair<DatasetIdentity, double> identify_dataset(const Data& data) {
  const auto t0 = std::chrono::steady_clock::now();
  auto dataset = dataset_identity(data.folder, data.train_x.size(0), data.test_x.size(0));
  return {std::move(dataset), std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
}

// The network, initialized from the run's one generator, then --load-weights, on the device, in its layout.
ResNet build_model(const Args& args, const torch::Device& device, at::Generator& generator) {
  ResNet model = make_model(args.model);
  init_weights(model, generator);
  if (!args.dump_init.empty()) save_weights(model, args.dump_init);
  if (!args.load_weights.empty()) load_weights(model, args.load_weights, args.model);
  model->to(device);
  if (args.channels_last) to_channels_last(model);
  return model;
}

// SGD with the recipe's momentum, Nesterov and weight decay: LibTorch's per-tensor loop, or ForeachSGD.
std::unique_ptr<torch::optim::SGD> make_optimizer(ResNet& model, const Args& args) {
  const auto options =
      torch::optim::SGDOptions(args.lr).momentum(kMomentum).nesterov(kNesterov).weight_decay(kWeightDecay).dampening(0);
  if (args.optimizer_impl == "foreach") return std::make_unique<ForeachSGD>(model->parameters(), options);
  return std::make_unique<torch::optim::SGD>(model->parameters(), options);
}

// Where each epoch's training batches and each evaluation's batches come from (one pass per call).
struct BatchSources {
  std::function<std::unique_ptr<BatchSource>()> train, test;
};

BatchSources batch_sources(const Args& args, const Data& data, const torch::Device& device, at::Generator& generator,
                           const Job* job) {
  if (args.data_pipeline == "idiomatic") {
    auto loaders = std::make_shared<IdiomaticLoaders>(data.folder, device, pipeline_options(args));
    return {[loaders] { return loaders->train_batches(); }, [loaders] { return loaders->test_batches(); }};
  }
  const int64_t rank = job ? job->rank() : 0, world_size = job ? job->world_size() : 1;
  return {[&, rank, world_size] {
            return std::make_unique<MatchedBatches>(data.train_x, data.train_y, generator, args.batch_size, rank,
                                                    world_size);
          },
          [&] { return std::make_unique<OrderedBatches>(data.test_x, data.test_y, args.batch_size); }};
}

// ---- training and evaluation -----------------------------------------------------------------------

// Linear warm-up over the first fifth of the steps, then linear decay towards zero.
double lr_at_step(int64_t step, int64_t total_steps, double peak_lr) {
  const int64_t warmup = std::max<int64_t>(1, total_steps / 5);
  if (step < warmup) return peak_lr * double(step + 1) / double(warmup);
  return peak_lr * double(total_steps - step) / double(total_steps - warmup);
}

// One SGD step at learning rate `lr`; returns the loss and the logits on the device, without waiting. In a distributed
// run the forward goes through the replica, which averages the gradients across ranks.
std::pair<torch::Tensor, torch::Tensor> train_step(ResNet& model, torch::optim::SGD& optimizer, const torch::Tensor& x,
                                                   const torch::Tensor& y, double lr, const torch::Device& device,
                                                   const std::string& precision, DataParallel* replica) {
  for (auto& group : optimizer.param_groups()) static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
  torch::Tensor logits, loss;
  {
    AutocastScope autocast(device, precision);
    logits = replica ? replica->forward(x) : model->forward(x);
    loss = torch::nn::functional::cross_entropy(logits, y);
  }
  optimizer.zero_grad(/*set_to_none=*/true);
  loss.backward();
  if (replica) replica->after_backward();
  optimizer.step();
  return {loss, logits};
}

struct EpochResult {
  torch::Tensor loss_sum;     // float32 scalar on the device
  torch::Tensor correct;      // int64 scalar on the device
  torch::Tensor step_losses;  // [steps] on the device
  int64_t images;
  double lr;
};

using DumpBatch = std::function<void(const torch::Tensor&, const torch::Tensor&)>;

// One epoch over `batches`. Nothing here waits for the device. `dump_batch` (may be empty) sees the first batch
// of the run. `trace` (may be null) records each step in a kTraceStep scope and stops after `trace_stop` steps (0:
// the caller stops it). `replica` (null in a single-process run) frames each step.
EpochResult train_epoch(ResNet& model, torch::optim::SGD& optimizer, BatchSource& batches, const torch::Device& device,
                        int64_t first_step, int64_t total_steps, const Args& args, const TestHooks& hooks,
                        const DumpBatch& dump_batch, Trace* trace, int64_t trace_stop, DataParallel* replica) {
  model->train();
  auto loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  auto correct = torch::zeros({}, torch::TensorOptions().dtype(torch::kInt64).device(device));
  std::vector<torch::Tensor> step_losses;
  int64_t images = 0;
  double lr = args.lr;
  for (int64_t i = 0;; ++i) {
    auto batch = batches.next();
    if (!batch) break;
    {
      TraceScope scope(kTraceStep, trace);
      const int64_t step = first_step + i;
      if (replica) replica->begin_step(step);
      lr = lr_at_step(step, total_steps, args.lr);
      auto x = as_input_layout(batch->images, args.channels_last);
      const auto& y = batch->labels;
      if (dump_batch && step == 0) dump_batch(x, y);
      if (step == hooks.crash_at_step) std::abort();  // a trainer crash, as a segfault or OOM kill would be
      if (step == hooks.nan_at_step) x = x * std::numeric_limits<double>::quiet_NaN();  // as a diverging run
      const auto [loss, logits] = train_step(model, optimizer, x, y, lr, device, args.precision, replica);
      loss_sum += loss.detach() * y.size(0);
      correct += (logits.argmax(1) == y).sum();
      step_losses.push_back(loss.detach());
      images += y.size(0);
      if (hooks.sleep_per_step_ms > 0) {
        std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(hooks.sleep_per_step_ms));
      }
      if (replica) replica->end_step();
    }
    if (trace && i + 1 == trace_stop) trace->stop();
  }
  return {loss_sum, correct, torch::stack(step_losses), images, lr};
}

// Mean loss and accuracy (%) over `batches`, one host read at the end.
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

// The batch sizes (per rank) a pass over n records in batches of batch_size produces, each once: `full_steps` times
// the full batch, then the partial last batch if there is one.
std::vector<int64_t> warmup_shapes(int64_t n, int64_t batch_size, int64_t full_steps, int64_t world_size = 1) {
  std::vector<int64_t> sizes;
  for (const auto& [start, stop] : global_batches(n, batch_size, world_size)) {
    const auto [lo, hi] = rank_rows(start, stop, 0, world_size);
    sizes.push_back(hi - lo);
  }
  std::vector<int64_t> shapes(size_t(full_steps), sizes.front());
  if (sizes.back() != sizes.front()) shapes.push_back(sizes.back());
  return shapes;
}

// Untimed training steps at every shape the timed run will see (args.warmup_steps full batches, the partial
// last batch), then evaluation at the full and partial eval batch, in the run's precision and layout:
// cuDNN/cuBLAS handles, lazy kernel loading, per-shape plans (autotuning with --cudnn-benchmark) and the
// allocator's pools are ready before the first clock read. The run stays as if none had happened: the
// batches come from a generator of their own, the optimizer is a throwaway one, the weights and BatchNorm
// buffers are restored. In a distributed run the steps go through the replica (DDP's first iterations, its bucket
// rebuild included, are warm-up). Returns the seconds it took.
double warm_up(ResNet& model, const Data& data, const torch::Device& device, const Args& args, DataParallel* replica) {
  const int64_t t0 = now_ns(device);
  std::vector<torch::Tensor> saved;
  for (const auto& entry : state_dict(model)) saved.push_back(entry.second.clone());
  const auto optimizer = make_optimizer(model, args);
  // Not the run's generator: its draws stay untouched.
  auto generator = at::make_generator<at::CPUGeneratorImpl>(uint64_t(args.seed));
  const auto x_u8 = data.train_x.slice(0, 0, args.batch_size).to(device);
  const auto y = data.train_y.slice(0, 0, args.batch_size).to(device);
  model->train();
  const int64_t world_size = replica ? replica->job.world_size() : 1;
  for (const int64_t n : warmup_shapes(data.train_x.size(0), args.batch_size, args.warmup_steps, world_size)) {
    const auto batch = MatchedBatches(x_u8.slice(0, 0, n), y.slice(0, 0, n), generator, n).next();
    train_step(model, *optimizer, as_input_layout(batch->images, args.channels_last), batch->labels, args.lr, device,
               args.precision, replica);
  }
  for (const int64_t n : warmup_shapes(data.test_x.size(0), args.batch_size, 1)) {
    OrderedBatches batches(data.test_x.slice(0, 0, n), data.test_y.slice(0, 0, n), n);
    evaluate(model, batches, device, args);
  }
  {
    torch::NoGradGuard no_grad;
    const auto entries = state_dict(model);
    for (size_t i = 0; i < entries.size(); ++i) entries[i].second.copy_(saved[i]);
  }
  model->zero_grad(/*set_to_none=*/true);
  const double seconds = seconds_since(t0, device);
  std::fprintf(stderr, "warm-up %lld steps %.3fs\n", (long long)args.warmup_steps, seconds);
  return seconds;
}

// --trace-dir, made before anything runs: a folder that cannot be made stops the run now, not after training.
void prepare_trace_dir(const Args& args) {
  if (args.trace_steps == 0) return;
  std::error_code error;
  std::filesystem::create_directories(args.trace_dir, error);
  if (error) throw std::runtime_error(c10::str("cannot create --trace-dir ", args.trace_dir, ": ", error.message()));
}

// The epoch's losses as doubles; a non-finite one stops the run, naming its step.
std::vector<double> check_step_losses(const torch::Tensor& step_losses, int64_t epoch, int64_t steps_per_epoch) {
  const auto losses = step_losses.to(torch::kCPU, torch::kDouble);
  const auto bad = torch::isfinite(losses).logical_not().nonzero();
  if (bad.size(0) > 0) {
    const int64_t s = bad[0][0].item<int64_t>();
    throw std::runtime_error(c10::str("non-finite training loss at epoch ", epoch, " step ", s, " (global step ",
                                      (epoch - 1) * steps_per_epoch + s, "); no results written"));
  }
  return std::vector<double>(losses.data_ptr<double>(), losses.data_ptr<double>() + losses.numel());
}

void check_test_loss(double test_loss, int64_t epoch) {
  if (!std::isfinite(test_loss)) {  // finite training losses, yet the last update broke the weights
    throw std::runtime_error(
        c10::str("non-finite test loss at epoch ", epoch, ": the weights diverged; no results written"));
  }
}

EpochRecord epoch_record(int64_t epoch, const EpochResult& result, double train_seconds, double eval_seconds,
                         double test_loss, double test_acc) {
  const double images = double(result.images);
  return {epoch,
          train_seconds,
          eval_seconds,
          images / train_seconds,
          result.loss_sum.item<double>() / images,
          100.0 * double(result.correct.item<int64_t>()) / images,
          test_loss,
          test_acc,
          result.lr};
}

void print_progress(int64_t epoch, int64_t epochs, const EpochRecord& rec, double elapsed) {
  const double eta = elapsed / double(epoch) * double(epochs - epoch);
  std::fprintf(stderr,
               "epoch %lld/%lld train %.3fs eval %.3fs loss %.4f acc %.2f%% test_loss %.4f test_acc %.2f%% "
               "lr %.6f elapsed %.1fs eta %.1fs\n",
               (long long)epoch, (long long)epochs, rec.train_seconds, rec.eval_seconds, rec.train_loss,
               rec.train_accuracy, rec.test_loss, rec.test_accuracy, rec.lr, elapsed, eta);
}

// The profiler for the traced epoch (--trace-steps), or null.
std::unique_ptr<Trace> train_trace(const Args& args, const torch::Device& device) {
  return args.trace_steps > 0 ? std::make_unique<Trace>(device, trace_files(args).get("train").str()) : nullptr;
}

// The timed epochs: each trains, checks its losses, evaluates, and is recorded and printed. The window (time and
// peak memory) opens here: warm-up, data loading and the model's creation excluded. In a distributed run every rank
// trains its rows of each global batch; rank 0 alone evaluates (the model itself, not its replica), records and
// prints, while the others wait for it.
Training train(ResNet& model, torch::optim::SGD& optimizer, const BatchSources& sources, const Data& data,
               const torch::Device& device, const Args& args, const TestHooks& hooks, DataParallel* replica) {
  const int64_t world_size = replica ? replica->job.world_size() : 1;
  const int64_t steps_per_epoch = int64_t(global_batches(data.train_x.size(0), args.batch_size, world_size).size());
  if (steps_per_epoch == 0) {
    throw std::runtime_error(
        c10::str(data.train_x.size(0), " training records cannot give each of ", world_size, " ranks one"));
  }
  DumpBatch dump_batch;  // empty without --dump-batch; built here, outside every timed window
  if (!args.dump_batch.empty()) {
    dump_batch = [&](const torch::Tensor& x, const torch::Tensor& y) {
      save_tensor_dict({{"images", x}, {"labels", y}, {"test_images", data.test_x}}, args.dump_batch);
    };
  }
  Training training;
  reset_peak_memory(device);
  const int64_t start = now_ns(device);
  for (int64_t epoch = 1; epoch <= (args.eval_only ? 0 : args.epochs); ++epoch) {
    const auto trace = epoch == args.epochs ? train_trace(args, device) : nullptr;  // recording before the clock
    std::optional<EpochResult> result;
    double train_seconds;
    {
      const auto window = process_window("epoch", c10::str("epoch ", epoch));
      const int64_t t0 = traced_now_ns(device, trace.get());
      if (replica) replica->start_epoch();
      auto batches = sources.train();
      // K steps recorded; an epoch of K steps or fewer is traced whole, with its evaluation
      result = train_epoch(model, optimizer, *batches, device, (epoch - 1) * steps_per_epoch,
                           args.epochs * steps_per_epoch, args, hooks, dump_batch, trace.get(),
                           args.trace_steps < steps_per_epoch ? args.trace_steps : 0, replica);
      train_seconds =
          double(traced_now_ns(device, trace.get()) - t0) / 1e9 + added_seconds(hooks, result->step_losses.numel());
    }
    const auto losses = check_step_losses(result->step_losses, epoch, steps_per_epoch);
    training.step_losses.insert(training.step_losses.end(), losses.begin(), losses.end());
    if (replica) replica->end_epoch(result->loss_sum, result->correct, result->images, losses);
    if (!replica || replica->job.rank() == 0) {
      const int64_t t0 = now_ns(device);
      auto test_batches = sources.test();
      std::pair<double, double> test;
      {
        TraceScope scope(kTraceEvaluate, trace.get());
        test = evaluate(model, *test_batches, device, args);
      }
      const auto [test_loss, test_acc] = test;
      const double eval_seconds = seconds_since(t0, device);
      if (trace) trace->stop();
      check_test_loss(test_loss, epoch);
      training.epochs.push_back(epoch_record(epoch, *result, train_seconds, eval_seconds, test_loss, test_acc));
      print_progress(epoch, args.epochs, training.epochs.back(), seconds_since(start, device));
    }
    if (replica) barrier(replica->job);
  }
  training.total_seconds = seconds_since(start, device) + added_seconds(hooks, int64_t(training.step_losses.size()));
  training.peak_memory_bytes = args.eval_only ? Json() : peak_memory_bytes(device);
  if (replica) training.distributed = replica->section(args);
  return training;
}

// The last epoch's metrics; with --eval-only, one evaluation of the model as loaded.
Json final_metrics(ResNet& model, const BatchSources& sources, const Training& training, const torch::Device& device,
                   const Args& args) {
  if (!args.eval_only) {
    const auto& last = training.epochs.back();
    return final_json(last.train_loss, last.train_accuracy, last.test_loss, last.test_accuracy);
  }
  auto test_batches = sources.test();
  const auto [test_loss, test_acc] = evaluate(model, *test_batches, device, args);
  std::fprintf(stderr, "eval test_loss %.4f test_acc %.2f%%\n", test_loss, test_acc);
  return final_json(Json(), Json(), test_loss, test_acc);
}

// ---- inference and what the run leaves behind ------------------------------------------------------

// Latency per path and batch size, then concurrency, then (--trace-steps) the traced inference samples. With
// `outputs` (--dump-logits), the eval-mode test logits go in first, then each path's output.
Inference measure_inference(ResNet& model, const torch::Tensor& test_x, const torch::Device& device,
                            const InferOptions& options, NamedTensors* outputs, const Args& args) {
  if (outputs) {
    model->eval();
    c10::InferenceMode inference;
    AutocastScope autocast(device, options.precision);
    outputs->emplace_back("logits", model->forward(test_x).to(torch::kFloat32));
  }
  Inference inference;
  if (options.latency_iters > 0) {
    std::tie(inference.latency, inference.unavailable) = measure_latency(model, test_x, device, options, outputs);
  }
  if (!options.concurrency.empty()) inference.concurrency = measure_concurrency(model, test_x, device, options);
  if (args.trace_steps > 0) {
    trace_inference(model, test_x, device, options, args.trace_steps, trace_files(args).get("inference").str());
  }
  return inference;
}

// The files the flags ask for, and a note for each inference path that could not run.
void save_outputs(const Args& args, const ResNet& model, const Inference& inference, const NamedTensors* outputs) {
  if (outputs) save_tensor_dict(*outputs, args.dump_logits);
  for (const auto& item : inference.unavailable) {
    std::fprintf(stderr, "%s: note: %s skipped: %s\n", kProgram.data(), item.get("feature").str().c_str(),
                 item.get("reason").str().c_str());
  }
  if (!args.save_weights.empty()) save_weights(model, args.save_weights);
}

// ---- the run ---------------------------------------------------------------------------------------

void run(const Args& command_line) {
  const TestHooks hooks = read_test_hooks();
  auto plants = read_plants();
  Job* job = connect(command_line);  // null unless launched by torchrun (or with its environment)
  const Args args = rank_args(command_line, job);
  const torch::Device device = setup_backend(args, job);
  ProcessRecord& record = start_record(std::move(plants));  // the process's state, from here on (BENCH_PLANT's drifts)
  if (job) start(*job, args, device);
  check_aoti_packages(infer_options(args), device);
  prepare_trace_dir(args);
  const Data data = load_data(args, device);
  auto generator = at::make_generator<at::CPUGeneratorImpl>(uint64_t(args.seed));
  ResNet model = build_model(args, device, generator);
  const auto replica = job ? std::make_unique<DataParallel>(model, *job, args) : nullptr;
  const auto optimizer = make_optimizer(model, args);
  const BatchSources sources = batch_sources(args, data, device, generator, job);
  // the model ready: before its first training step or inference
  const Json startup_seconds = seconds_since_process_start(device);
  const auto [dataset, dataset_hash_seconds] = identify_dataset(data);
  const Json warmup_seconds =
      args.warmup_steps > 0 && !args.eval_only ? Json(warm_up(model, data, device, args, replica.get())) : Json();
  const auto empty_samples = empty_samples_us(device);
  const Training training = train(model, *optimizer, sources, data, device, args, hooks, replica.get());
  if (job && job->rank() != 0) {  // rank 0 measures inference and writes the results
    if (!args.save_weights.empty()) save_weights(model, args.save_weights);
    return finish(*job);
  }
  const Json final = final_metrics(model, sources, training, device, args);
  NamedTensors outputs;
  NamedTensors* dump = args.dump_logits.empty() ? nullptr : &outputs;
  Inference inference = measure_inference(model, data.test_x, device, infer_options(args), dump, args);
  for (auto& entry : unavailable(device)) inference.unavailable.push_back(std::move(entry));
  save_outputs(args, model, inference, dump);
  const Json doc = results_document(args, run_facts(device, args.precision), param_count(model), dataset,
                                    startup_seconds, dataset_hash_seconds, warmup_seconds, empty_samples, training,
                                    final, inference, peak_rss_bytes(), record.section());
  if (!args.results.empty()) write_results_atomic(doc, args.results);
  if (job) finish(*job);
}

extern "C" void on_signal(int sig) {
  // Only async-signal-safe calls here: write(2) (to the watchdog's pipe), unlink(2) and _exit(2).
  if (interrupt_job(sig)) return;                         // a distributed run: its watchdog names the failure
  if (pending_tmp()[0] != '\0') ::unlink(pending_tmp());  // interrupted while writing the results
  static const char kInt[] = "bench_train: error: interrupted by SIGINT; no results written\n";
  static const char kTerm[] = "bench_train: error: interrupted by SIGTERM; no results written\n";
  const std::string_view message = sig == SIGINT ? kInt : kTerm;
  (void)!::write(STDERR_FILENO, message.data(), message.size());
  ::_exit(kExitSignalBase + sig);
}

// The error's one line (in a distributed run, the job's line naming the rank that failed, printed by the rank that
// names it first) and the exit status. A distributed run ends at once: its process group may be broken.
int fail(const std::string& message, int code) {
  if (const auto line = failure_line(first_line(message), /*collective=*/code != kExitUsageError)) {
    std::fprintf(stderr, "%s: error: %s\n", kProgram.data(), line->c_str());
  }
  if (current_job()) {
    std::fflush(stderr);
    ::_exit(code);
  }
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGINT, on_signal);  // before parsing, as in Python
  std::signal(SIGTERM, on_signal);
  try {
    run(parse_args(argc, argv));
  } catch (const UsageError& e) {
    return fail(e.what(), kExitUsageError);
  } catch (const c10::Error& e) {
    return fail(e.what_without_backtrace(), kExitRuntimeError);
  } catch (const std::exception& e) {
    return fail(e.what(), kExitRuntimeError);
  }
  return 0;
}
