// The idiomatic data pipeline: LibTorch's own dataset + DataLoader (twin of bench/pipeline.py).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>

#include "data.h"
#include "train.h"

// The train and test loaders of one run (Python: idiomatic_loaders + device_batches).
class IdiomaticLoaders {
 public:
  IdiomaticLoaders(const std::string& data_dir, const torch::Device& device, const Args& args);
  // One pass over the training set, shuffled and augmented per image, batches copied to the device.
  std::unique_ptr<BatchSource> train_batches();
  // One pass over the test set in order, normalized, batches copied to the device.
  std::unique_ptr<BatchSource> test_batches();
};
