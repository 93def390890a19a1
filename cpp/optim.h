// The multi-tensor ("foreach") SGD step that PyTorch's Python optimizer uses and LibTorch lacks.
// Python's twin is torch.optim.SGD(foreach=True); docs/twins.md ("Modes") lists the kernel order.
#pragma once

#include <torch/torch.h>

// torch::optim::SGD with the step of torch/optim/sgd.py `_multi_tensor_sgd`: the same _foreach_* kernels in
// the same order, one launch per kernel for the whole parameter list instead of one per tensor. Param
// groups, options and momentum buffers are the base class's, so the two implementations are
// interchangeable behind a torch::optim::SGD&.
class ForeachSGD : public torch::optim::SGD {
 public:
  using torch::optim::SGD::SGD;
  torch::Tensor step(LossClosure closure = nullptr) override;
};
