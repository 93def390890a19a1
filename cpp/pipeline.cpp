#include "pipeline.h"

#include <tuple>
#include <vector>

namespace {

// torchvision's RandomCrop(32, padding=4) then RandomHorizontalFlip() on one CHW uint8 image; LibTorch has
// neither. Draws from LibTorch's default CPU generator (locked, so the loader's worker threads may share it).
torch::Tensor random_crop_flip_one(const torch::Tensor& image) {
  const auto padded = torch::constant_pad_nd(image, {kPad, kPad, kPad, kPad}, 0);  // uint8 zeros: black
  const auto offsets = torch::randint(0, 2 * kPad + 1, {2}, torch::kInt64);
  const int64_t dy = offsets[0].item<int64_t>(), dx = offsets[1].item<int64_t>();
  const auto crop = padded.slice(1, dy, dy + kSide).slice(2, dx, dx + kSide);
  return torch::rand({1}).item<double>() < 0.5 ? crop.flip({2}) : crop;
}

// One pass of a DataLoader, each batch copied to the device.
template <typename Loader>
class LoaderBatches : public BatchSource {
 public:
  LoaderBatches(Loader& loader, const torch::Device& device)
      : it_(loader.begin()), end_(loader.end()), device_(device) {}

  std::optional<Batch> next() override {
    if (it_ == end_) return std::nullopt;
    // LibTorch's DataLoader has no pin_memory option: the batch is pinned here (Python pins in a helper
    // thread), so that the copy is asynchronous as in Python; a pageable copy would wait for the device.
    const bool cuda = device_.is_cuda();
    const auto x = cuda ? it_->data.pin_memory() : it_->data;
    const auto y = cuda ? it_->target.pin_memory() : it_->target;
    Batch batch{x.to(device_, /*non_blocking=*/cuda), y.to(device_, /*non_blocking=*/cuda)};
    ++it_;
    return batch;
  }

 private:
  torch::data::Iterator<torch::data::Example<>> it_, end_;
  torch::Device device_;
};

}  // namespace

CifarBinary::CifarBinary(const std::string& root, bool train, int64_t limit) : train(train) {
  std::tie(images, labels) = load_split(root, train, limit);
}

torch::data::Example<> CifarBinary::get(size_t index) {
  auto image = images[int64_t(index)];
  if (train) image = random_crop_flip_one(image);
  return {image.to(torch::kFloat32).div(255), labels[int64_t(index)]};
}

std::optional<size_t> CifarBinary::size() const { return size_t(images.size(0)); }

IdiomaticLoaders::IdiomaticLoaders(const std::string& data_dir, const torch::Device& device, const Args& args)
    : device_(device) {
  // The RandomSampler's shuffles and get()'s crops and flips draw from the default generator.
  torch::manual_seed(uint64_t(args.seed));
  const auto options = torch::data::DataLoaderOptions(args.batch_size).workers(args.workers);
  // Workers are threads here (each with a copy of the dataset, sharing its tensors); Python's are processes.
  train_loader_ = torch::data::make_data_loader<torch::data::samplers::RandomSampler>(
      CifarBinary(data_dir, /*train=*/true, args.train_limit)
          .map(torch::data::transforms::Normalize<>(kCifarMean, kCifarStd))
          .map(torch::data::transforms::Stack<>()),
      options);
  test_loader_ = torch::data::make_data_loader<torch::data::samplers::SequentialSampler>(
      CifarBinary(data_dir, /*train=*/false, args.test_limit)
          .map(torch::data::transforms::Normalize<>(kCifarMean, kCifarStd))
          .map(torch::data::transforms::Stack<>()),
      options);
}

std::unique_ptr<BatchSource> IdiomaticLoaders::train_batches() {
  return std::make_unique<LoaderBatches<TrainLoader>>(*train_loader_, device_);
}

std::unique_ptr<BatchSource> IdiomaticLoaders::test_batches() {
  return std::make_unique<LoaderBatches<TestLoader>>(*test_loader_, device_);
}
