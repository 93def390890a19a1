// Results document helpers: percentiles, latency summaries and the atomic write (twin of bench/results.py;
// the schema is in docs/twins.md). The JSON value is cpp/json.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "json.h"

// Linear interpolation between closest ranks; `sorted` must be sorted and non-empty.
double percentile(const std::vector<double>& sorted, double q);

struct LatencySummary {
  double median_ms, p90_ms, p99_ms, mean_ms;
};
LatencySummary summarize_ms(const std::vector<double>& samples_ms);

// The results' record of the clock's own cost: every empty sample (µs) and their median.
Json empty_sample_entry(const std::vector<double>& samples_us);

// Writes `doc` to PATH.tmp.<pid>, then renames it over PATH; throws std::runtime_error on failure (a
// non-finite number included: JSON has none) and leaves no file behind.
void write_results_atomic(const Json& doc, const std::string& path);

// The temporary file being written ("" when none): a signal handler removes it before the process exits.
const char* pending_tmp();
