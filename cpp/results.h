// The results document: what a run measured, its statistics, and its atomic writing (twin of
// bench/results.py). The schema is schema/results.schema.json.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data.h"
#include "flags.h"
#include "json.h"

// One epoch's record, its keys in the schema's order (Python: results.EpochRecord).
struct EpochRecord {
  int64_t epoch;
  double train_seconds, eval_seconds, images_per_second, train_loss, train_accuracy, test_loss, test_accuracy, lr;
};

// The timed epochs: one record per epoch, every step's loss, the whole window and its peak memory.
struct Training {
  std::vector<EpochRecord> epochs;
  std::vector<double> step_losses;
  double total_seconds = 0;
  Json peak_memory_bytes;  // null on CPU and for --eval-only
};

// Latency per path and batch size, the paths this run could not measure, concurrent inference.
struct Inference {
  Json::Array latency, unavailable, concurrency;
};

// Linear interpolation between closest ranks; `sorted` must be sorted and non-empty.
double percentile(const std::vector<double>& sorted, double q);

// median_ms, p90_ms, p99_ms and mean_ms of the samples, as an object.
Json summarize_ms(const std::vector<double>& samples_ms);

// The results' record of the clock's own cost: every empty sample (µs) and their median.
Json empty_sample_entry(const std::vector<double>& samples_us);

// The final metrics: the last epoch's, or with --eval-only one evaluation's (no training ones: null).
Json final_json(const Json& train_loss, const Json& train_accuracy, double test_loss, double test_accuracy);

// The run's configuration: every flag the table records in config (kFlags' config_key), in its order, then the
// recipe's constants.
Json run_config(const Args& args);

// The Chrome traces --trace-steps writes, by what they hold; null without it.
Json trace_files(const Args& args);

// The whole document, in the schema's order. `facts` is run_facts() (runtime.h); `startup_seconds` is
// seconds_since_process_start() once the model is ready (before the first training step, or the first inference
// with --eval-only); `dataset_hash_seconds` the dataset's SHA-256, timed apart; `final_metrics` is final_json(...);
// `peak_rss_bytes` is peak_rss_bytes(); `process` the run's ProcessRecord::section().
Json results_document(const Args& args, const Json& facts, int64_t param_count, const DatasetIdentity& dataset,
                      const Json& startup_seconds, double dataset_hash_seconds, const Json& warmup_seconds,
                      const std::vector<double>& empty_samples, const Training& training, const Json& final_metrics,
                      const Inference& inference, int64_t peak_rss_bytes, const Json& process);

// The temporary file being written ("" when none): a signal handler removes it before the process exits.
const char* pending_tmp();

// Writes `doc` to PATH.tmp.<pid>, then renames it over PATH; throws std::runtime_error "cannot write results
// to PATH: ..." on failure (a non-finite number included: JSON has none) and leaves no file behind.
void write_results_atomic(const Json& doc, const std::string& path);
