// CIFAR ResNet-18/34, weight init from an explicit generator, state dict and weights files
// (twin of bench/model.py).
#pragma once

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

struct BasicBlockImpl : torch::nn::Module {
  BasicBlockImpl(int64_t in_planes, int64_t planes, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::Sequential downsample{nullptr};  // registered only when the shape changes
};
TORCH_MODULE(BasicBlock);

struct ResNetImpl : torch::nn::Module {
  ResNetImpl(const std::vector<int64_t>& blocks_per_stage, int64_t num_classes = 10);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(ResNet);

// A model of kModels (cpp/vocab.h).
ResNet make_model(const std::string& name);

// Python's model.to(memory_format=torch.channels_last): every 4-d parameter and buffer becomes channels_last.
void to_channels_last(ResNet& model);

// PyTorch's default init distributions, drawn from `gen` in module pre-order.
void init_weights(ResNet& model, at::Generator& gen);

int64_t param_count(const ResNet& model);

// Named tensors in order (Python: a dict of tensors).
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Python's Module.state_dict() order: pre-order modules, each one's parameters then its buffers.
NamedTensors state_dict(const ResNet& model);

// Writes the state dict as a torch pickle of a dict (CPU, contiguous): torch.load reads it.
void save_weights(const ResNet& model, const std::string& path);
// Reads a dict of tensors written by torch.save or save_weights; every key, shape and dtype must fit.
// std::runtime_error names the file and the cause ("cannot read weights file ...", "... does not fit ...").
void load_weights(ResNet& model, const std::string& path, const std::string& model_name);

// Writes {name: tensor} as a torch pickle (weights files, --dump-* files).
void save_tensor_dict(const NamedTensors& tensors, const std::string& path);
