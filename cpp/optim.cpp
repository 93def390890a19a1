#include "optim.h"

#include <stdexcept>
#include <vector>

torch::Tensor ForeachSGD::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups()) {
    const auto& o = static_cast<const torch::optim::SGDOptions&>(group.options());
    std::vector<torch::Tensor> params, grads;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      if (p.grad().is_sparse()) throw std::runtime_error("ForeachSGD: sparse gradients are not supported");
      params.push_back(p);
      grads.push_back(p.grad());
    }
    if (params.empty()) continue;
    // All parameters share one device and dtype here, so Python's grouping by (device, dtype) is one group.
    if (o.weight_decay() != 0) grads = torch::_foreach_add(grads, params, o.weight_decay());
    if (o.momentum() != 0) {
      auto bufs = momentum_buffers(params, grads, o);
      if (o.nesterov()) {
        torch::_foreach_add_(grads, bufs, o.momentum());
      } else {
        grads = std::move(bufs);
      }
    }
    torch::_foreach_add_(params, grads, -o.lr());
  }
  return loss;
}

std::vector<torch::Tensor> ForeachSGD::momentum_buffers(const std::vector<torch::Tensor>& params,
                                                        const std::vector<torch::Tensor>& grads,
                                                        const torch::optim::SGDOptions& o) {
  std::vector<torch::Tensor> bufs;
  bool all_have_buffers = true;
  for (const auto& p : params) {
    const auto it = state_.find(p.unsafeGetTensorImpl());
    if (it == state_.end()) {
      all_have_buffers = false;
    } else {
      bufs.push_back(static_cast<torch::optim::SGDParamState&>(*it->second).momentum_buffer());
    }
  }
  if (all_have_buffers) {
    torch::_foreach_mul_(bufs, o.momentum());
    torch::_foreach_add_(bufs, grads, 1 - o.dampening());
    return bufs;
  }
  bufs.clear();  // first step: the buffers start as a copy of the gradients, as in Python
  for (size_t i = 0; i < params.size(); ++i) {
    auto& slot = state_[params[i].unsafeGetTensorImpl()];
    if (!slot) {
      auto state = std::make_unique<torch::optim::SGDParamState>();
      state->momentum_buffer(grads[i].detach().clone());
      slot = std::move(state);
    } else {
      auto& buf = static_cast<torch::optim::SGDParamState&>(*slot).momentum_buffer();
      buf.mul_(o.momentum()).add_(grads[i], 1 - o.dampening());
    }
    bufs.push_back(static_cast<torch::optim::SGDParamState&>(*slot).momentum_buffer());
  }
  return bufs;
}
