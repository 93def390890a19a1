// Inference for latency: the paths (eager, compile, aoti, cuda-graph) and concurrent inference
// (twin of bench/infer.py). docs/twins.md ("Modes") says what each path is.
#pragma once

#include <torch/torch.h>

#include "model.h"
#include "results.h"
#include "train.h"

// The first `batch_size` normalized test images (repeated when there are fewer), in the run's layout.
torch::Tensor latency_input(const torch::Tensor& test_x, int64_t batch_size, bool channels_last);

// Per-sample forward latency for each requested path and batch size: the latency entries of the results.
// Paths this language or device cannot run are appended to `unavailable` ({feature, reason}) and skipped.
Json::Array measure_latency(ResNet& model, const torch::Tensor& test_x, const torch::Device& device, const Args& args,
                            Json::Array& unavailable);

// Batch-1 inference from N threads sharing the model, for each N in args.concurrency.
Json::Array measure_concurrency(ResNet& model, const torch::Tensor& test_x, const torch::Device& device,
                                const Args& args);
