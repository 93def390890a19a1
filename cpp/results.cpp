#include "results.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <type_traits>
#include <variant>

#include "vocab.h"

namespace {

constexpr int64_t kSchemaVersion = 6;

Json epoch_json(const EpochRecord& e) {
  return Json::object({{"epoch", e.epoch},
                       {"train_seconds", e.train_seconds},
                       {"eval_seconds", e.eval_seconds},
                       {"images_per_second", e.images_per_second},
                       {"train_loss", e.train_loss},
                       {"train_accuracy", e.train_accuracy},
                       {"test_loss", e.test_loss},
                       {"test_accuracy", e.test_accuracy},
                       {"lr", e.lr}});
}

Json dataset_json(const DatasetIdentity& d) {
  return Json::object({{"kind", d.kind},
                       {"path", d.path},
                       {"sha256", d.sha256},
                       {"train_records", d.train_records},
                       {"test_records", d.test_records}});
}

}  // namespace

double percentile(const std::vector<double>& sorted, double q) {
  const double pos = q / 100.0 * double(sorted.size() - 1);
  const std::size_t lo = std::size_t(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - double(lo));
}

Json summarize_ms(const std::vector<double>& samples_ms) {
  std::vector<double> sorted = samples_ms;
  std::sort(sorted.begin(), sorted.end());
  double sum = 0.0;
  for (double s : sorted) sum += s;
  return Json::object({{"median_ms", percentile(sorted, 50)},
                       {"p90_ms", percentile(sorted, 90)},
                       {"p99_ms", percentile(sorted, 99)},
                       {"mean_ms", sum / double(samples_ms.size())}});
}

Json empty_sample_entry(const std::vector<double>& samples_us) {
  std::vector<double> sorted = samples_us;
  std::sort(sorted.begin(), sorted.end());
  return Json::object({{"samples_us", samples_us}, {"median_us", percentile(sorted, 50)}});
}

Json final_json(const Json& train_loss, const Json& train_accuracy, double test_loss, double test_accuracy) {
  return Json::object({{"train_loss", train_loss},
                       {"train_accuracy", train_accuracy},
                       {"test_loss", test_loss},
                       {"test_accuracy", test_accuracy}});
}

Json run_config(const Args& args) {
  Json config = Json::object({});
  for (const auto& flag : kFlags) {
    if (flag.config_key.empty()) continue;
    std::visit(
        [&](auto member) {
          const auto& value = args.*member;
          if constexpr (std::is_same_v<std::remove_cvref_t<decltype(value)>, std::string>) {
            config.set(std::string(flag.config_key), value.empty() ? Json() : Json(value));  // an empty path: null
          } else {
            config.set(std::string(flag.config_key), value);
          }
        },
        flag.field);
  }
  config.update(Json::object({{"momentum", kMomentum},
                              {"weight_decay", kWeightDecay},
                              {"nesterov", kNesterov},
                              {"schedule", std::string(kSchedule)}}));
  return config;
}

Json trace_files(const Args& args) {
  if (args.trace_steps == 0) return Json();
  const std::filesystem::path folder(args.trace_dir);
  return Json::object({{"train", args.eval_only ? Json() : Json((folder / kTrainTraceFile).string())},
                       {"inference", (folder / kInferenceTraceFile).string()}});
}

Json results_document(const Args& args, const Json& facts, int64_t param_count, const DatasetIdentity& dataset,
                      const Json& startup_seconds, double dataset_hash_seconds, const Json& warmup_seconds,
                      const std::vector<double>& empty_samples, const Training& training, const Json& final_metrics,
                      const Inference& inference, int64_t peak_rss_bytes, const Json& process) {
  Json::Array epochs;
  for (const auto& record : training.epochs) epochs.push_back(epoch_json(record));
  Json doc = Json::object({{"schema_version", kSchemaVersion},
                           {"complete", true},
                           {"language", std::string(kLanguage)},
                           {"model", args.model},
                           {"param_count", param_count},
                           {"torch_version", facts.get("torch_version")},
                           {"cuda_version", facts.get("cuda_version")},
                           {"cudnn_version", facts.get("cudnn_version")},
                           {"device", facts.get("device")},
                           {"backend", facts.get("backend")},
                           {"dataset", dataset_json(dataset)},
                           {"config", run_config(args)},
                           {"precision_label", facts.get("precision_label")},
                           {"startup_seconds", startup_seconds},
                           {"dataset_hash_seconds", dataset_hash_seconds},
                           {"warmup_seconds", warmup_seconds},
                           {"empty_sample_us", empty_sample_entry(empty_samples)},
                           {"epochs", epochs},
                           {"total_seconds", training.total_seconds},
                           {"final", final_metrics},
                           {"latency", inference.latency},
                           {"concurrency", inference.concurrency},
                           {"unavailable", inference.unavailable},
                           {"peak_memory_bytes", training.peak_memory_bytes},
                           {"peak_rss_bytes", peak_rss_bytes},
                           {"traces", trace_files(args)},
                           {"process", process}});
  if (args.record_step_losses) doc.set("step_losses", training.step_losses);
  return doc;
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
