#include "model.h"

#include <cmath>
#include <stdexcept>

#include "vocab.h"

namespace nn = torch::nn;
namespace F = torch::nn::functional;

namespace {

constexpr int64_t kStem = 64;                              // channels after conv1
const std::vector<int64_t> kWidths = {64, 128, 256, 512};  // of the four stages
const std::vector<int64_t> kFirstStrides = {1, 2, 2, 2};   // of each stage's first block

nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

}  // namespace

BasicBlockImpl::BasicBlockImpl(int64_t in_planes, int64_t planes, int64_t stride) {
  conv1 = register_module("conv1", conv(in_planes, planes, 3, stride));
  bn1 = register_module("bn1", nn::BatchNorm2d(planes));
  conv2 = register_module("conv2", conv(planes, planes, 3, 1));
  bn2 = register_module("bn2", nn::BatchNorm2d(planes));
  if (stride != 1 || in_planes != planes) {
    downsample =
        register_module("downsample", nn::Sequential(conv(in_planes, planes, 1, stride), nn::BatchNorm2d(planes)));
  }
}

torch::Tensor BasicBlockImpl::forward(const torch::Tensor& x) {
  auto out = F::relu(bn1(conv1(x)));
  out = bn2(conv2(out));
  out = out + (downsample ? downsample->forward(x) : x);
  return F::relu(out);
}

ResNetImpl::ResNetImpl(const std::vector<int64_t>& blocks_per_stage, int64_t num_classes) {
  conv1 = register_module("conv1", conv(kChannels, kStem, 3, 1));
  bn1 = register_module("bn1", nn::BatchNorm2d(kStem));
  nn::Sequential* layers[] = {&layer1, &layer2, &layer3, &layer4};
  int64_t in_planes = kStem;
  for (size_t stage = 0; stage < 4; ++stage) {
    nn::Sequential seq;
    for (int64_t b = 0; b < blocks_per_stage[stage]; ++b) {
      seq->push_back(BasicBlock(in_planes, kWidths[stage], b == 0 ? kFirstStrides[stage] : 1));
      in_planes = kWidths[stage];
    }
    *layers[stage] = register_module("layer" + std::to_string(stage + 1), seq);
  }
  fc = register_module("fc", nn::Linear(kWidths.back(), num_classes));
}

torch::Tensor ResNetImpl::forward(const torch::Tensor& x) {
  auto out = F::relu(bn1(conv1(x)));
  out = layer4->forward(layer3->forward(layer2->forward(layer1->forward(out))));
  out = torch::flatten(F::adaptive_avg_pool2d(out, F::AdaptiveAvgPool2dFuncOptions(1)), 1);
  // aten::linear, as Python's nn.Linear calls it: LibTorch's Linear module calls addmm(bias, x, weight.t()) itself,
  // which under autocast casts after the transpose where aten::linear casts before it (tests/test_traces.py).
  return torch::linear(out, fc->weight, fc->bias);
}

ResNet make_model(const std::string& name) {
  for (const auto& model : kModels) {
    if (model.name == name) return ResNet(std::vector<int64_t>(model.stages.begin(), model.stages.end()));
  }
  std::string known;
  for (const auto& model : kModels) known += c10::str(known.empty() ? "" : ", ", model.name);
  throw std::invalid_argument(c10::str("unknown model '", name, "' (choose from ", known, ")"));
}

void init_weights(ResNet& model, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  for (const auto& module : model->modules()) {
    if (auto* c = module->as<nn::Conv2d>()) {
      const double bound = 1.0 / std::sqrt(double(c->weight[0].numel()));
      c->weight.uniform_(-bound, bound, gen);
    } else if (auto* l = module->as<nn::Linear>()) {
      const double bound = 1.0 / std::sqrt(double(l->weight[0].numel()));
      l->weight.uniform_(-bound, bound, gen);
      l->bias.uniform_(-bound, bound, gen);
    } else if (auto* bn = module->as<nn::BatchNorm2d>()) {
      bn->weight.fill_(1.0);
      bn->bias.fill_(0.0);
    }
  }
}

int64_t param_count(const ResNet& model) {
  int64_t count = 0;
  for (const auto& p : model->parameters()) count += p.numel();
  return count;
}

void to_channels_last(ResNet& model) {
  torch::NoGradGuard no_grad;
  for (auto& t : model->parameters()) {
    if (t.dim() == 4) t.set_data(t.data().contiguous(torch::MemoryFormat::ChannelsLast));
  }
  for (auto& t : model->buffers()) {
    if (t.dim() == 4) t.set_data(t.data().contiguous(torch::MemoryFormat::ChannelsLast));
  }
}

NamedTensors state_dict(const ResNet& model) {
  NamedTensors entries;
  for (const auto& item : model->named_modules()) {
    const auto& prefix = item.key();
    for (const auto& p : item.value()->named_parameters(/*recurse=*/false)) {
      entries.emplace_back(join(prefix, p.key()), p.value());
    }
    for (const auto& b : item.value()->named_buffers(/*recurse=*/false)) {
      entries.emplace_back(join(prefix, b.key()), b.value());
    }
  }
  return entries;
}
