// Inference for latency: the paths (eager, compile, aoti, cuda-graph) and concurrent inference
// (twin of bench/infer.py). docs/twins.md ("Modes") says what each path is.
#pragma once

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "json.h"
#include "model.h"

// What inference needs of the command line (Python: infer.InferOptions).
struct InferOptions {
  std::string model;
  std::string precision;
  bool channels_last = false;
  std::vector<std::string> inference_paths;
  std::vector<int64_t> latency_batch_sizes;
  int64_t latency_iters = 0;
  int64_t latency_warmup = 0;
  std::vector<int64_t> concurrency;
  int64_t concurrency_iters = 0;
  std::string aoti_dir;  // "" = none
};

// Every AOTInductor package the latency run will load is in --aoti-dir: checked before training, so that a
// missing one does not end a long run at its end. std::runtime_error names the file and the command.
void check_aoti_packages(const InferOptions& options, const torch::Device& device);

// The first `batch_size` normalized test images (repeated when there are fewer), in the run's layout.
torch::Tensor latency_input(const torch::Tensor& test_x, int64_t batch_size, bool channels_last);

// Per-sample forward latency for each requested path and batch size: (latency entries, unavailable entries);
// paths this language or device cannot run are listed as unavailable ({feature, reason}) and skipped. With
// `outputs` (--dump-logits), each path's float32 output on its latency input is appended as "<path>.bs<B>".
std::pair<Json::Array, Json::Array> measure_latency(ResNet& model, const torch::Tensor& test_x,
                                                    const torch::Device& device, const InferOptions& options,
                                                    NamedTensors* outputs = nullptr);

// For each inference path both languages have (compile is not one) and each latency batch size, the latency's own
// warm-up and `samples` untimed samples, run as measure_latency runs them (time_samples, in its contexts and window),
// each call in a scope, recorded into the Chrome trace `path`: what one inference sample runs, op by op, in which
// autograd mode, after how many warm-up calls.
void trace_inference(ResNet& model, const torch::Tensor& test_x, const torch::Device& device,
                     const InferOptions& options, int64_t samples, const std::string& path);

// Batch-1 inference from N threads sharing the eval-mode model, for each N in options.concurrency. On CPU the
// intra-op pool is set to one thread for the measurement (and restored after), so the threads compare the
// interpreters, not the pool.
Json::Array measure_concurrency(ResNet& model, const torch::Tensor& test_x, const torch::Device& device,
                                const InferOptions& options);
