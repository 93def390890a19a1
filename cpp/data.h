// CIFAR-10 binaries: read, identify, normalize, crop+flip, per-epoch draws, batches, and the default folder a run
// without --data reads (twin of bench/data.py, in its order).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

// A bad or missing data file; reported as one line, exit 1.
struct DataError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr int64_t kChannels = 3;
constexpr int64_t kSide = 32;                                    // image height and width
constexpr int64_t kRecordBytes = 1 + kChannels * kSide * kSide;  // one label byte, then the CHW pixels
constexpr int64_t kNumClasses = 10;
// Per-channel statistics of the 50000 official training images.
inline const std::vector<double> kCifarMean = {0.4914, 0.4822, 0.4465};
inline const std::vector<double> kCifarStd = {0.2470, 0.2435, 0.2616};
constexpr int64_t kPad = 4;  // zero padding of the random crop

// uint8 images [N,3,32,32] and int64 labels [N] of one CIFAR-10 binary file.
std::pair<torch::Tensor, torch::Tensor> read_cifar_batch(const std::string& path);

// The train split (data_batch_1..5 in order) or the test split, cut to the first `limit` records (0 = all).
std::pair<torch::Tensor, torch::Tensor> load_split(const std::string& data_dir, bool train, int64_t limit);

struct DatasetIdentity {
  std::string kind;  // "official", "subset" or "synthetic"
  std::string path;  // the folder as given
  std::string sha256;
  int64_t train_records;
  int64_t test_records;
};
DatasetIdentity dataset_identity(const std::string& data_dir, int64_t train_records, int64_t test_records);

// (mean, std) as float32 [1,3,1,1] on `device`, built once: a host-to-device copy per batch would make the
// host wait for the device inside every training step.
std::pair<torch::Tensor, torch::Tensor> cifar_stats(const torch::Device& device);

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

struct Batch {
  torch::Tensor images;  // float32, normalized, on the training device
  torch::Tensor labels;  // int64, on the training device
};

// A source of batches for one pass (Python: an iterator of (x, y)); next() is empty after the last batch.
struct BatchSource {
  virtual ~BatchSource() = default;
  virtual std::optional<Batch> next() = 0;
};

// (start, stop) positions of each global batch of an epoch of n records: world_size * batch_size rows each, the
// last partial one kept when it has a row for every rank.
std::vector<std::pair<int64_t, int64_t>> global_batches(int64_t n, int64_t batch_size, int64_t world_size = 1);

// Rank `rank`'s positions in the global batch [start, stop): the batch cut into world_size equal consecutive slices
// (a partial batch's remainder rows are left out, so every rank's batch has the same size).
std::pair<int64_t, int64_t> rank_rows(int64_t start, int64_t stop, int64_t rank, int64_t world_size);

// One epoch of the matched pipeline (Python: the generator matched_batches): the epoch's draws at
// construction, then normalized, augmented batches gathered on the device. The last partial batch is kept.
// Data-parallel, every rank makes the same draws and takes its rows of each global batch.
class MatchedBatches : public BatchSource {
 public:
  MatchedBatches(const torch::Tensor& images_u8, const torch::Tensor& labels, at::Generator& gen, int64_t batch_size,
                 int64_t rank = 0, int64_t world_size = 1);
  std::optional<Batch> next() override;

 private:
  torch::Tensor images_u8_, labels_, perm_, crops_, flips_;
  std::vector<std::pair<int64_t, int64_t>> batches_;
  int64_t rank_, world_size_;
  size_t next_ = 0;
};

// The resident, normalized images in order, in batches (Python: ordered_batches).
class OrderedBatches : public BatchSource {
 public:
  OrderedBatches(const torch::Tensor& images, const torch::Tensor& labels, int64_t batch_size);
  std::optional<Batch> next() override;

 private:
  torch::Tensor images_, labels_;
  int64_t batch_size_, start_ = 0;
};

// $BENCH_CACHE, else ~/.cache/torch-api-bench, joined without normalizing (as Python joins it).
std::string cache_root();

// The folder name, in the cache, of the synthetic set of `train` and `test` records drawn from `seed`.
std::string synthetic_dir(int64_t train, int64_t test, int64_t seed);

// (folder, note or ""): the folder a run without --data reads, as `python -m bench.prepare default` left it in
// the cache: the official set, else the synthetic set (the note says so loudly). Never runs anything; nothing
// prepared is a DataError naming the command.
std::pair<std::string, std::string> find_default_data();
