// The NCCL backend of a distributed CUDA run (one GPU per rank), compiled for CUDA torch wheels only
// (BENCH_WITH_NCCL): ProcessGroupNCCL.hpp needs nccl.h, which comes with the nvidia-nccl wheel those depend on.
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include "dist.h"

// As torch.distributed.init_process_group("nccl", device_id=...): a normal-priority stream, the run's timeout, bound
// to the rank's GPU (start() connects it eagerly, as a bound device does in Python).
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                    std::chrono::milliseconds timeout, const torch::Device& device) {
  auto options = c10d::ProcessGroupNCCL::Options::create(/*is_high_priority_stream=*/false);
  options->timeout = timeout;
  auto backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, options);
  return backend;
}
