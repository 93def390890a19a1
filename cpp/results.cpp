#include "results.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>

double percentile(const std::vector<double>& sorted, double q) {
  const double pos = q / 100.0 * double(sorted.size() - 1);
  const std::size_t lo = std::size_t(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - double(lo));
}

LatencySummary summarize_ms(const std::vector<double>& samples_ms) {
  std::vector<double> sorted = samples_ms;
  std::sort(sorted.begin(), sorted.end());
  double sum = 0.0;
  for (double s : sorted) sum += s;
  return {percentile(sorted, 50), percentile(sorted, 90), percentile(sorted, 99), sum / double(samples_ms.size())};
}

Json empty_sample_entry(const std::vector<double>& samples_us) {
  std::vector<double> sorted = samples_us;
  std::sort(sorted.begin(), sorted.end());
  return Json::object({{"samples_us", Json::Array(samples_us.begin(), samples_us.end())},
                       {"median_us", percentile(sorted, 50)}});
}

// Fixed storage, so that a signal handler can read it without allocating.
char g_pending_tmp[4096] = "";

const char* pending_tmp() { return g_pending_tmp; }

void write_results_atomic(const Json& doc, const std::string& path) {
  std::string text;
  try {
    text = doc.dump();
  } catch (const std::domain_error& e) {
    throw std::runtime_error("cannot write results to " + path + ": " + e.what());
  }
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::snprintf(g_pending_tmp, sizeof g_pending_tmp, "%s", tmp.c_str());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  bool ok = f != nullptr;
  if (ok) {
    ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    ok = (std::fflush(f) == 0) && ok;
    ok = (::fsync(::fileno(f)) == 0) && ok;
    ok = (std::fclose(f) == 0) && ok;
  }
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string cause = std::strerror(errno);
    std::remove(tmp.c_str());
    g_pending_tmp[0] = '\0';
    throw std::runtime_error("cannot write results to " + path + ": " + cause);
  }
  g_pending_tmp[0] = '\0';
}
