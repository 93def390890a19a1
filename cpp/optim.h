// The multi-tensor ("foreach") SGD step that PyTorch's Python optimizer uses and LibTorch lacks.
// Python's twin is torch.optim.SGD(foreach=True); docs/twins.md ("Modes") lists the kernel order.
#pragma once

#include <torch/torch.h>

#include <vector>

// torch::optim::SGD with the step of torch/optim/sgd.py `_multi_tensor_sgd`: the same _foreach_* kernels in
// the same order, one launch per kernel for the whole parameter list instead of one per tensor. Param
// groups, options and momentum buffers are the base class's, so the two implementations are
// interchangeable behind a torch::optim::SGD&.
class ForeachSGD : public torch::optim::SGD {
 public:
  using torch::optim::SGD::SGD;
  torch::Tensor step(LossClosure closure = nullptr) override;

 private:
  // The momentum buffers after this step's update (_foreach_mul_, _foreach_add_); on the first step, copies of
  // the gradients, as in Python.
  std::vector<torch::Tensor> momentum_buffers(const std::vector<torch::Tensor>& params,
                                              const std::vector<torch::Tensor>& grads,
                                              const torch::optim::SGDOptions& o);
};
