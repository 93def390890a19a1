#include "infer.h"

#include <functional>
#include <stdexcept>
#include <vector>

#include "runtime.h"

torch::Tensor latency_input(const torch::Tensor& test_x, int64_t batch_size, bool channels_last) {
  const auto idx = torch::arange(batch_size, test_x.options().dtype(torch::kInt64)) % test_x.size(0);
  return as_input_layout(test_x.index({idx}), channels_last);
}

namespace {

// `warmup` untimed calls, then `iters` samples of one call each, in ms (the clock read syncs the device).
std::vector<double> time_samples(const std::function<void(const torch::Tensor&)>& fn, const torch::Tensor& x,
                                 int64_t iters, int64_t warmup, const torch::Device& device) {
  for (int64_t k = 0; k < warmup; ++k) fn(x);
  std::vector<double> samples;
  for (int64_t k = 0; k < iters; ++k) {
    const int64_t t0 = now_ns(device);
    fn(x);
    samples.push_back(double(now_ns(device) - t0) / 1e6);
  }
  return samples;
}

Json latency_entry(const std::string& path, int64_t batch_size, const std::vector<double>& samples) {
  const auto s = summarize_ms(samples);
  return Json::object({{"path", path},
                       {"batch_size", batch_size},
                       {"samples_ms", Json::Array(samples.begin(), samples.end())},
                       {"median_ms", s.median_ms},
                       {"p90_ms", s.p90_ms},
                       {"p99_ms", s.p99_ms},
                       {"mean_ms", s.mean_ms}});
}

}  // namespace

Json::Array measure_latency(ResNet& model, const torch::Tensor& test_x, const torch::Device& device, const Args& args,
                            Json::Array& unavailable) {
  model->eval();
  Json::Array latency;
  for (const auto& path : args.inference_paths) {
    if (path != "eager") {
      unavailable.push_back(Json::object({{"feature", "inference path " + path}, {"reason", "not implemented yet"}}));
      continue;
    }
    for (const int64_t bs : args.latency_batch_sizes) {
      const auto x = latency_input(test_x, bs, args.channels_last);
      c10::InferenceMode inference;
      AutocastScope autocast(device, args.precision);
      const auto samples = time_samples([&](const torch::Tensor& in) { model->forward(in); }, x, args.latency_iters,
                                        args.latency_warmup, device);
      latency.push_back(latency_entry(path, bs, samples));
    }
  }
  return latency;
}

Json::Array measure_concurrency(ResNet&, const torch::Tensor&, const torch::Device&, const Args&) {
  throw std::runtime_error("concurrent inference: in progress");
}
