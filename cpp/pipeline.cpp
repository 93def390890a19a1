#include "pipeline.h"

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "process.h"

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
    // LibTorch's DataLoader has no pin_memory option: the batch is pinned here, on the training thread (as
    // Python's DataLoader does without workers), so that the copy is asynchronous as in Python; a pageable
    // copy would wait for the device.
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

// One pass of a DataLoader with workers on CUDA: a helper thread takes the batches from the iterator in order,
// pins them and hands them over through a queue of kAhead; the training thread only starts the asynchronous
// copies. This mirrors Python's DataLoader with workers and pin_memory=True, whose pin_memory_thread pins
// what the workers made, so that neither language pins on the training thread.
template <typename Loader>
class PinnedLoaderBatches : public BatchSource {
 public:
  PinnedLoaderBatches(Loader& loader, const torch::Device& device)
      : it_(loader.begin()), end_(loader.end()), device_(device), thread_([this] { pin_all(); }) {}

  // Also mid-pass (an exception in the training step): the helper stops at its next batch and is joined.
  ~PinnedLoaderBatches() override {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    changed_.notify_all();
    thread_.join();
  }

  std::optional<Batch> next() override {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return !ready_.empty() || done_; });
    if (ready_.empty()) {  // the pass is over, or the loader threw: here, after the batches before the error
      if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
      return std::nullopt;
    }
    const auto [x, y] = std::move(ready_.front());
    ready_.pop_front();
    lock.unlock();
    changed_.notify_all();
    return Batch{x.to(device_, /*non_blocking=*/true), y.to(device_, /*non_blocking=*/true)};
  }

 private:
  static constexpr size_t kAhead = 2;  // pinned batches ready at most (a few MB each)

  // The helper thread: every batch of the pass, then done_, with the loader's exception if it threw.
  void pin_all() {
    std::exception_ptr error;
    try {
      // What Python's pin_memory_thread does first: its device, and one intra-op thread for the copies (ATen
      // makes 1 also the default of threads that start later, in both languages alike).
      const c10::DeviceGuard device_guard(device_);
      torch::set_num_threads(1);
      for (; it_ != end_; ++it_) {
        std::pair pinned{it_->data.pin_memory(), it_->target.pin_memory()};
        std::unique_lock lock(mutex_);
        changed_.wait(lock, [this] { return ready_.size() < kAhead || stop_; });
        if (stop_) break;
        ready_.push_back(std::move(pinned));
        lock.unlock();
        changed_.notify_all();
      }
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard lock(mutex_);
      error_ = error;
      done_ = true;
    }
    changed_.notify_all();
  }

  torch::data::Iterator<torch::data::Example<>> it_, end_;  // used by the helper thread only
  torch::Device device_;
  std::mutex mutex_;
  std::condition_variable changed_;  // ready_, done_ or stop_ changed
  std::deque<std::pair<torch::Tensor, torch::Tensor>> ready_;
  std::exception_ptr error_;
  bool done_ = false, stop_ = false;
  std::thread thread_;  // last: starts once everything it uses exists
};

// Pins off the training thread only where Python does (see PinnedLoaderBatches); the loader's begin() is
// called here either way, so the sampler draws its order at the same point as before.
template <typename Loader>
std::unique_ptr<BatchSource> loader_batches(Loader& loader, const torch::Device& device) {
  if (device.is_cuda() && loader.options().workers > 0) {
    return std::make_unique<PinnedLoaderBatches<Loader>>(loader, device);
  }
  return std::make_unique<LoaderBatches<Loader>>(loader, device);
}

}  // namespace

CifarBinary::CifarBinary(const std::string& root, bool train, int64_t limit) : train(train) {
  std::tie(images, labels) = load_split(root, train, limit);
}

torch::data::Example<> CifarBinary::get(size_t index) {
  if (!std::exchange(reported, true)) process_worker_thread("loader");  // a thread that runs ATen ops for training
  auto image = images[int64_t(index)];
  if (train) image = random_crop_flip_one(image);
  return {image.to(torch::kFloat32).div(255), labels[int64_t(index)]};
}

std::optional<size_t> CifarBinary::size() const { return size_t(images.size(0)); }

IdiomaticLoaders::IdiomaticLoaders(const std::string& data_dir, const torch::Device& device,
                                   const PipelineOptions& options)
    : device_(device) {
  // The RandomSampler's shuffles and get()'s crops and flips draw from the default generator.
  torch::manual_seed(uint64_t(options.seed));
  const auto loader_options = torch::data::DataLoaderOptions(options.batch_size).workers(options.workers);
  // Workers are threads here (each with a copy of the dataset, sharing its tensors); Python's are processes.
  train_loader_ = torch::data::make_data_loader<torch::data::samplers::RandomSampler>(
      CifarBinary(data_dir, /*train=*/true, options.train_limit)
          .map(torch::data::transforms::Normalize<>(kCifarMean, kCifarStd))
          .map(torch::data::transforms::Stack<>()),
      loader_options);
  test_loader_ = torch::data::make_data_loader<torch::data::samplers::SequentialSampler>(
      CifarBinary(data_dir, /*train=*/false, options.test_limit)
          .map(torch::data::transforms::Normalize<>(kCifarMean, kCifarStd))
          .map(torch::data::transforms::Stack<>()),
      loader_options);
}

std::unique_ptr<BatchSource> IdiomaticLoaders::train_batches() { return loader_batches(*train_loader_, device_); }

std::unique_ptr<BatchSource> IdiomaticLoaders::test_batches() { return loader_batches(*test_loader_, device_); }
