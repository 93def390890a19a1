// Inference for latency: the paths (eager, compile, aoti, cuda-graph) and concurrent inference
// (twin of bench/infer.py). docs/twins.md ("Modes") says what each path is.
#pragma once

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "model.h"
#include "results.h"
#include "train.h"

// The first `batch_size` normalized test images (repeated when there are fewer), in the run's layout.
torch::Tensor latency_input(const torch::Tensor& test_x, int64_t batch_size, bool channels_last);

// Per-sample forward latency for each requested path and batch size: the latency entries of the results.
// Paths this language or device cannot run are appended to `unavailable` ({feature, reason}) and skipped.
// With `outputs` (--dump-logits), each path's float32 output on its latency input is appended as
// "<path>.bs<B>".
Json::Array measure_latency(ResNet& model, const torch::Tensor& test_x, const torch::Device& device, const Args& args,
                            Json::Array& unavailable,
                            std::vector<std::pair<std::string, torch::Tensor>>* outputs = nullptr);

// Batch-1 inference from N threads sharing the eval-mode model, for each N in args.concurrency. On CPU the
// intra-op pool is set to one thread for the measurement (and restored after), so the threads compare the
// interpreters, not the pool.
Json::Array measure_concurrency(ResNet& model, const torch::Tensor& test_x, const torch::Device& device,
                                const Args& args);
