// bench_train's command line, built from the one table of flags (cpp/vocab.h kFlags). Twin of bench/flags.py.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

// A bad command line: one line on stderr, exit 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The parsed command line (Python: flags.Args): one field per flag, in the table's order. parse_args sets every
// field, from the flag or from the table's default.
struct Args {
  std::string model;
  int64_t epochs = 0;
  int64_t batch_size = 0;
  double lr = 0;
  std::string data;  // "" = none, as for every text flag
  int64_t train_limit = 0;
  int64_t test_limit = 0;
  std::string device;
  int64_t seed = 0;
  int64_t repeat = 0;
  int64_t threads = 0;
  std::string results;
  std::vector<int64_t> latency_batch_sizes;
  int64_t latency_iters = 0;
  int64_t latency_warmup = 0;
  int64_t warmup_steps = 0;
  std::string save_weights;
  std::string load_weights;
  bool eval_only = false;
  bool deterministic = false;
  bool cudnn_benchmark = false;
  bool record_step_losses = false;
  std::string dump_init;
  std::string dump_batch;
  std::string dump_logits;
  int64_t trace_steps = 0;
  std::string trace_dir;
  std::string precision;
  bool channels_last = false;
  std::string optimizer_impl;
  std::string data_pipeline;
  int64_t workers = 0;
  std::vector<std::string> inference_paths;
  std::string aoti_dir;
  std::vector<int64_t> concurrency;
  int64_t concurrency_iters = 0;
  std::string grad_sync;
  int64_t no_sync_blocks = 0;
  int64_t dist_timeout = 0;
};

// `text` as an integer in [low, high], else UsageError "<name> must be an integer in [low, high], got '<text>'".
int64_t parse_int(std::string_view name, std::string_view text, int64_t low, int64_t high);
// `text` as a number in (low, high] (a float's lower limit is excluded: --lr > 0), else UsageError.
double parse_float(std::string_view name, std::string_view text, int64_t low, int64_t high);

// Accepts `--flag value` and `--flag=value`; prints the help and exits 0 for -h or --help.
Args parse_args(int argc, char** argv);
