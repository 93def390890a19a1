// The idiomatic data pipeline: LibTorch's own dataset + DataLoader (twin of bench/pipeline.py).
#pragma once

#include <torch/torch.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "data.h"

// What the idiomatic pipeline needs of the command line (Python: pipeline.PipelineOptions).
struct PipelineOptions {
  int64_t batch_size = 0;
  int64_t workers = 0;
  int64_t seed = 0;
  int64_t train_limit = 0;
  int64_t test_limit = 0;
};

// The train or test split of the CIFAR-10 binary files, first `limit` records (0 = all), uint8 CHW in
// memory. get() does the per-image work (Python: the transforms v2 pipeline): for the train split a random
// 32x32 crop of the 4-pixel zero-padded image and a random horizontal flip, then float in [0,1].
// Normalization is a map() transform, as in LibTorch's examples. Bad files throw DataError here.
struct CifarBinary : torch::data::datasets::Dataset<CifarBinary> {
  CifarBinary(const std::string& root, bool train, int64_t limit);
  torch::data::Example<> get(size_t index) override;
  std::optional<size_t> size() const override;

  bool train;
  torch::Tensor images, labels;  // uint8 [N,3,32,32], int64 [N]
  bool reported = false;         // this copy's thread recorded (process.h): each worker thread has a copy of its own
};

// The train and test loaders of one run (Python: idiomatic_loaders + device_batches).
class IdiomaticLoaders {
 public:
  IdiomaticLoaders(const std::string& data_dir, const torch::Device& device, const PipelineOptions& options);
  // One pass over the training set, shuffled and augmented per image, batches copied to the device.
  std::unique_ptr<BatchSource> train_batches();
  // One pass over the test set in order, normalized, batches copied to the device.
  std::unique_ptr<BatchSource> test_batches();

 private:
  using Normalized = torch::data::datasets::MapDataset<CifarBinary, torch::data::transforms::Normalize<>>;
  using Batched = torch::data::datasets::MapDataset<Normalized, torch::data::transforms::Stack<>>;
  using TrainLoader = torch::data::StatelessDataLoader<Batched, torch::data::samplers::RandomSampler>;
  using TestLoader = torch::data::StatelessDataLoader<Batched, torch::data::samplers::SequentialSampler>;

  torch::Device device_;
  std::unique_ptr<TrainLoader> train_loader_;
  std::unique_ptr<TestLoader> test_loader_;
};
