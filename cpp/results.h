// Results document helpers: percentiles, latency summaries, a minimal JSON value and the atomic write
// (twin of bench/results.py; the schema is in docs/twins.md).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <variant>
#include <vector>

// A JSON value. Objects keep insertion order, like Python dicts.
class Json {
 public:
  using Array = std::vector<Json>;
  using Object = std::vector<std::pair<std::string, Json>>;

  Json() : value_(nullptr) {}  // null
  Json(std::nullptr_t) : value_(nullptr) {}
  Json(bool b) : value_(b) {}
  Json(int i) : value_(std::int64_t(i)) {}
  Json(std::int64_t i) : value_(i) {}
  Json(double d) : value_(d) {}
  Json(const char* s) : value_(std::string(s)) {}
  Json(std::string s) : value_(std::move(s)) {}
  Json(Array a) : value_(std::move(a)) {}
  Json(Object o) : value_(std::move(o)) {}

  static Json object(std::initializer_list<std::pair<std::string, Json>> items) { return Json(Object(items)); }

  // Appends a key to an object (the value must be an object).
  void set(std::string key, Json value);
  // The value of `key` in an object; throws std::out_of_range when it is missing.
  const Json& get(const std::string& key) const;
  // The text of a string value.
  const std::string& str() const { return std::get<std::string>(value_); }
  // Indented text; throws std::domain_error for a non-finite double (JSON has none).
  std::string dump() const;

 private:
  void dump_to(std::string& out, int indent) const;

  std::variant<std::nullptr_t, bool, std::int64_t, double, std::string, Array, Object> value_;
};

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
