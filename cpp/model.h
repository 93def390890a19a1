// CIFAR ResNet-18/34 (3x3 stem, no max-pool), weight init from an explicit generator, and the state dict (twin of
// bench/model.py). Weights files are weights.h.
#pragma once

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "data.h"  // kChannels, kNumClasses

struct BasicBlockImpl : torch::nn::Module {
  BasicBlockImpl(int64_t in_planes, int64_t planes, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::Sequential downsample{nullptr};  // registered only when the shape changes
};
TORCH_MODULE(BasicBlock);

struct ResNetImpl : torch::nn::Module {
  ResNetImpl(const std::vector<int64_t>& blocks_per_stage, int64_t num_classes = kNumClasses);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(ResNet);

// A model of kModels (vocab.h), or std::invalid_argument "unknown model 'x' (choose from ...)".
ResNet make_model(const std::string& name);

// PyTorch's default init distributions, drawn from `gen` in module pre-order.
void init_weights(ResNet& model, at::Generator& gen);

int64_t param_count(const ResNet& model);

// Python's model.to(memory_format=torch.channels_last): every 4-d parameter and buffer becomes channels_last.
void to_channels_last(ResNet& model);

// Named tensors in order (Python: a dict of tensors).
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Python's Module.state_dict() order: pre-order modules, each one's parameters then its buffers.
NamedTensors state_dict(const ResNet& model);
