// The parsed command line of bench_train (Python: the argparse namespace of bench/train.py). Shared by the
// training loop, the inference paths and the idiomatic pipeline; docs/twins.md lists every flag.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

// Untimed full-batch training steps before the first clock read (Python: WARMUP_STEPS, whose comment says why 3).
constexpr int64_t kWarmupSteps = 3;

struct Args {
  std::string model = "resnet18";
  int64_t epochs = 1;
  int64_t batch_size = 128;
  double lr = 0.1;
  std::string data;  // empty: ask `python3 -m bench.data default`
  int64_t train_limit = 0;
  int64_t test_limit = 0;
  std::string device = "auto";
  int64_t seed = 0;
  int64_t threads = 0;
  std::string results;
  std::vector<int64_t> latency_batch_sizes = {1, 32, 128};
  int64_t latency_iters = 100;
  int64_t latency_warmup = 10;
  int64_t warmup_steps = kWarmupSteps;
  std::string save_weights;
  std::string load_weights;
  bool eval_only = false;
  bool deterministic = false;
  bool cudnn_benchmark = false;
  bool record_step_losses = false;
  std::string dump_init;
  std::string dump_batch;
  std::string dump_logits;
  // Modes (docs/twins.md, "Modes").
  std::string precision = "fp32";
  bool channels_last = false;
  std::string optimizer_impl = "per-tensor";
  std::string data_pipeline = "matched";
  int64_t workers = 2;
  std::vector<std::string> inference_paths = {"eager"};
  std::vector<int64_t> concurrency;
  int64_t concurrency_iters = 50;
};
