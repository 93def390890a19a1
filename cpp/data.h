// CIFAR-10 binaries, dataset identity, normalization and crop+flip augmentation (twin of bench/data.py).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

// A bad or missing data file; reported as one line, exit 1.
struct DataError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One record = 1 label byte + 3072 image bytes (CHW, 32x32).
constexpr int64_t kRecordBytes = 1 + 3 * 32 * 32;

// uint8 images [N,3,32,32] and int64 labels [N] of one CIFAR-10 binary file.
std::pair<torch::Tensor, torch::Tensor> read_cifar_batch(const std::string& path);

// The train split (data_batch_1..5 in order) or the test split, cut to the first `limit` records (0 = all).
std::pair<torch::Tensor, torch::Tensor> load_split(const std::string& data_dir, bool train, int64_t limit);

struct DatasetIdentity {
  std::string kind;  // "official", "subset" or "synthetic"
  std::string path;  // the folder as given, spelled as Python's str(Path(...)) spells it
  std::string sha256;
  int64_t train_records;
  int64_t test_records;
};
DatasetIdentity dataset_identity(const std::string& data_dir, int64_t train_records, int64_t test_records);

// u8 [B,3,32,32] -> float32, scaled to [0,1], then standardized per channel.
torch::Tensor normalize(const torch::Tensor& images_u8);

// Zero-pad by 4, crop 32x32 at (dy,dx), then flip horizontally where flips == 1; one gather.
torch::Tensor random_crop_flip(const torch::Tensor& images_u8, const torch::Tensor& crops, const torch::Tensor& flips);

struct EpochAugmentation {
  torch::Tensor perm;   // int64 [n]
  torch::Tensor crops;  // int64 [n,2], (dy,dx) in 0..8
  torch::Tensor flips;  // int64 [n], 0 or 1
};
// The per-epoch draws, in this order, from the run's one CPU generator.
EpochAugmentation draw_epoch_augmentation(int64_t n, at::Generator& gen);
