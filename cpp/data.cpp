#include "data.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <vector>

#include "sha256.h"

namespace fs = std::filesystem;

namespace {

// The five train files, then the test file: the order of the split and of the dataset hash.
const std::vector<std::string> kTrainFiles = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                              "data_batch_4.bin", "data_batch_5.bin"};
const std::string kTestFile = "test_batch.bin";
constexpr int64_t kOfficialTrainRecords = 50000;
constexpr int64_t kOfficialTestRecords = 10000;
const std::string kSynthMarker = "synthetic.json";  // in a synthetic set's folder (bench/prepare.py writes it)
// The default data folders in the cache: the official set, else the synthetic set that stands in offline.
const std::string kOfficialDir = "cifar-10-batches-bin";
constexpr int64_t kSyntheticTrain = 5000, kSyntheticTest = 1000, kSyntheticSeed = 0;

int64_t file_size_or_throw(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw DataError("missing data file: " + path.string());
  auto size = fs::file_size(path, ec);
  if (ec) throw DataError(path.string() + ": " + ec.message());
  return int64_t(size);
}

}  // namespace

std::pair<torch::Tensor, torch::Tensor> read_cifar_batch(const std::string& path) {
  const int64_t size = file_size_or_throw(path);
  if (size == 0 || size % kRecordBytes != 0) {
    throw DataError(path + ": size " + std::to_string(size) + " is not a positive multiple of the " +
                    std::to_string(kRecordBytes) + "-byte record");
  }
  const int64_t n = size / kRecordBytes;
  auto raw = torch::empty({n, kRecordBytes}, torch::kUInt8);
  std::ifstream in(path, std::ios::binary);
  if (!in.read(reinterpret_cast<char*>(raw.data_ptr<uint8_t>()), size)) throw DataError(path + ": read failed");
  auto labels = raw.select(1, 0).to(torch::kInt64);
  if (labels.max().item<int64_t>() >= kNumClasses) {
    const int64_t bad = (labels >= kNumClasses).nonzero()[0][0].item<int64_t>();
    throw DataError(
        c10::str(path, ": record ", bad, " has label ", labels[bad].item<int64_t>(), " (> ", kNumClasses - 1, ")"));
  }
  auto images = raw.slice(1, 1).reshape({n, kChannels, kSide, kSide}).contiguous();
  return {images, labels};
}

std::pair<torch::Tensor, torch::Tensor> load_split(const std::string& data_dir, bool train, int64_t limit) {
  std::error_code ec;
  if (!fs::is_directory(data_dir, ec)) throw DataError("data folder not found: " + data_dir);
  const std::vector<std::string> files = train ? kTrainFiles : std::vector<std::string>{kTestFile};
  std::vector<torch::Tensor> images, labels;
  for (const auto& name : files) {
    auto [x, y] = read_cifar_batch((fs::path(data_dir) / name).string());
    images.push_back(x);
    labels.push_back(y);
  }
  auto x = torch::cat(images);
  auto y = torch::cat(labels);
  if (limit > 0) {
    x = x.slice(0, 0, limit);
    y = y.slice(0, 0, limit);
  }
  return {x, y};
}

DatasetIdentity dataset_identity(const std::string& data_dir, int64_t train_records, int64_t test_records) {
  std::vector<std::string> files = kTrainFiles;
  files.push_back(kTestFile);

  Sha256 hash;
  int64_t all_train_records = 0, all_test_records = 0;
  std::vector<char> chunk(1 << 20);
  for (const auto& name : files) {
    const fs::path path = fs::path(data_dir) / name;
    const int64_t records = file_size_or_throw(path) / kRecordBytes;
    (name == kTestFile ? all_test_records : all_train_records) += records;
    std::ifstream in(path, std::ios::binary);
    while (in) {
      in.read(chunk.data(), std::streamsize(chunk.size()));
      hash.update(chunk.data(), std::size_t(in.gcount()));
    }
  }

  std::string kind = "subset";
  if (fs::exists(fs::path(data_dir) / kSynthMarker)) {
    kind = "synthetic";
  } else if (all_train_records == kOfficialTrainRecords && all_test_records == kOfficialTestRecords) {
    kind = "official";
  }
  return {kind, data_dir, hash.hexdigest(), train_records, test_records};
}

std::pair<torch::Tensor, torch::Tensor> cifar_stats(const torch::Device& device) {
  static std::mutex mutex;
  static std::map<std::string, std::pair<torch::Tensor, torch::Tensor>> cache;  // by device.str()
  std::lock_guard<std::mutex> lock(mutex);
  auto [it, inserted] = cache.try_emplace(device.str());
  if (inserted) {
    auto opts = torch::TensorOptions().dtype(torch::kFloat32);
    it->second = {torch::tensor(kCifarMean, opts).view({1, kChannels, 1, 1}).to(device),
                  torch::tensor(kCifarStd, opts).view({1, kChannels, 1, 1}).to(device)};
  }
  return it->second;
}

torch::Tensor normalize(const torch::Tensor& images_u8) {
  const auto [mean, std] = cifar_stats(images_u8.device());
  return images_u8.to(torch::kFloat32).div(255).sub(mean).div(std);
}

torch::Tensor random_crop_flip(const torch::Tensor& images_u8, const torch::Tensor& crops, const torch::Tensor& flips) {
  using torch::indexing::None;
  using torch::indexing::Slice;
  const int64_t b = images_u8.size(0);
  auto long_opts = torch::TensorOptions().dtype(torch::kInt64).device(images_u8.device());
  // uint8 zeros: black before normalization, as torchvision pads.
  auto padded = torch::constant_pad_nd(images_u8, {kPad, kPad, kPad, kPad}, 0);
  auto ar = torch::arange(kSide, long_opts);
  auto rows = crops.select(1, 0).unsqueeze(1) + ar;
  auto cols = crops.select(1, 1).unsqueeze(1) + torch::where(flips.unsqueeze(1) == 1, (kSide - 1) - ar, ar);
  return padded.index({torch::arange(b, long_opts).index({Slice(), None, None, None}),
                       torch::arange(kChannels, long_opts).index({None, Slice(), None, None}),
                       rows.index({Slice(), None, Slice(), None}), cols.index({Slice(), None, None, Slice()})});
}

EpochAugmentation draw_epoch_augmentation(int64_t n, at::Generator& gen) {
  auto long_opts = torch::TensorOptions().dtype(torch::kInt64);
  auto perm = torch::randperm(n, gen, long_opts);
  auto crops = torch::randint(0, 2 * kPad + 1, {n, 2}, gen, long_opts);
  auto flips = torch::randint(0, 2, {n}, gen, long_opts);
  return {perm, crops, flips};
}

MatchedBatches::MatchedBatches(const torch::Tensor& images_u8, const torch::Tensor& labels, at::Generator& gen,
                               int64_t batch_size)
    : images_u8_(images_u8), labels_(labels), batch_size_(batch_size) {
  const auto draws = draw_epoch_augmentation(images_u8.size(0), gen);
  // non_blocking: a blocking host-to-device copy waits for the device (cudaStreamSynchronize) inside the timed
  // epoch. The draws are pageable memory, which CUDA stages before the call returns: freeing them is safe.
  perm_ = draws.perm.to(images_u8.device(), /*non_blocking=*/true);
  crops_ = draws.crops.to(images_u8.device(), /*non_blocking=*/true);
  flips_ = draws.flips.to(images_u8.device(), /*non_blocking=*/true);
}

std::optional<Batch> MatchedBatches::next() {
  const int64_t n = images_u8_.size(0);
  if (start_ >= n) return std::nullopt;
  const int64_t end = std::min(start_ + batch_size_, n);
  const auto idx = perm_.slice(0, start_, end);
  Batch batch{
      normalize(random_crop_flip(images_u8_.index({idx}), crops_.slice(0, start_, end), flips_.slice(0, start_, end))),
      labels_.index({idx})};
  start_ = end;
  return batch;
}

OrderedBatches::OrderedBatches(const torch::Tensor& images, const torch::Tensor& labels, int64_t batch_size)
    : images_(images), labels_(labels), batch_size_(batch_size) {}

std::optional<Batch> OrderedBatches::next() {
  const int64_t n = images_.size(0);
  if (start_ >= n) return std::nullopt;
  const int64_t end = std::min(start_ + batch_size_, n);
  Batch batch{images_.slice(0, start_, end), labels_.slice(0, start_, end)};
  start_ = end;
  return batch;
}

std::string cache_root() {
  if (const char* cache = std::getenv("BENCH_CACHE")) return cache;
  const char* home = std::getenv("HOME");
  if (home == nullptr) {
    const passwd* user = ::getpwuid(::getuid());
    home = user ? user->pw_dir : "";
  }
  return (fs::path(home) / ".cache" / "torch-api-bench").string();
}

std::string synthetic_dir(int64_t train, int64_t test, int64_t seed) {
  return c10::str("synthetic-", train, "-", test, "-", seed);
}

std::pair<std::string, std::string> find_default_data() {
  const std::string official = (fs::path(cache_root()) / kOfficialDir).string();
  std::vector<std::string> files = kTrainFiles;
  files.push_back(kTestFile);
  std::error_code ec;
  if (std::all_of(files.begin(), files.end(),
                  [&](const auto& f) { return fs::is_regular_file(fs::path(official) / f, ec); })) {
    return {official, ""};
  }
  const std::string synthetic =
      (fs::path(cache_root()) / synthetic_dir(kSyntheticTrain, kSyntheticTest, kSyntheticSeed)).string();
  if (fs::is_regular_file(fs::path(synthetic) / kSynthMarker, ec)) {
    return {synthetic, c10::str("no official CIFAR-10 in ", official, ": using the SYNTHETIC set ", synthetic,
                                "; results say dataset kind 'synthetic'")};
  }
  throw DataError(c10::str("no --data given and no prepared data in ", official,
                           ": run `python -m bench.prepare default` (downloads CIFAR-10, or writes the synthetic set "
                           "offline) or pass --data DIR"));
}
