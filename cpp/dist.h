// Data-parallel training under torchrun (docs/distributed.md). Twin of bench/dist.py.
//
// A run is distributed when the launcher's environment is set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
// MASTER_PORT; torchrun's agent store). Here: that environment; the job's store and the process group (gloo on CPU,
// NCCL on CUDA, one GPU per rank); the model as one replica of the job (c10d::Reducer driven as
// torch/nn/parallel/distributed.py drives it, or the flat-allreduce ablation); the collectives the run needs besides
// the gradients' (epoch sums, every rank's step times gathered on rank 0); and the watchdog, a heartbeat per rank in
// the store, by which a failure ends the job in one line naming the rank that failed.
#pragma once

#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/logger.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "flags.h"
#include "json.h"
#include "model.h"

// The launcher's environment (torchrun sets every variable; started by hand, LOCAL_* default to one node).
struct Launch {
  int64_t rank = 0, world_size = 1, local_rank = 0, local_world_size = 1;
  std::optional<int64_t> nodes;  // GROUP_WORLD_SIZE: torchrun's node groups; none when started without torchrun
  std::string master_addr;
  int64_t master_port = 0;
  bool agent_store = false;  // TORCHELASTIC_USE_AGENT_STORE: the torchrun agent hosts the store there
  int64_t restart = 0;       // TORCHELASTIC_RESTART_COUNT: keys of an earlier attempt stay apart
};

// The launcher's environment, or none for a single-process run (neither RANK nor WORLD_SIZE set); UsageError for
// an environment that does not hold together.
std::optional<Launch> read_launch();

// A connection to the job's store at MASTER_ADDR:MASTER_PORT, hosting it when `host`, prefixed per launch attempt.
c10::intrusive_ptr<c10d::Store> connect_store(const Launch& launch, int64_t timeout_s, bool host);

// Each rank's heartbeat in the job's store (a counter and the step the rank is at, every `period`, on a connection of
// its own), and the one line a failure ends the job with (Python: Watchdog). A rank that meets a failure (a
// collective's error or timeout, the launcher's SIGTERM, its own error) reads the others' heartbeats for two periods:
// a rank whose heartbeat stopped crashed or was killed; one whose step is behind hung. The first rank to name the
// failure claims it in the store and prints the line; the others end without one. Signals reach it through a pipe
// (interrupt), so that naming a failure never runs in a signal handler.
class Watchdog {
 public:
  Watchdog(const Launch& launch, int64_t timeout_s);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  std::atomic<int64_t> step{-1};  // the global step the main thread is at (-1: before training)
  // The job's one line for this failure, if this rank is the first to name it; none when another rank did. A second
  // call (the other thread) waits for the first to end the process. A collective's failure or a signal
  // (`collective`) is diagnosed; an error of this rank's own is its own.
  std::optional<std::string> fail(const std::string& cause, bool collective);
  // This rank is done: no heartbeat from now on, and no rank should take its silence for a failure.
  void finish();
  // Async-signal-safe: the heartbeat thread names the failure ("interrupted by SIG...") and ends the process.
  void interrupt(int signal_number);
  c10::intrusive_ptr<c10d::Store> store;

 private:
  void beat();
  void run();
  std::string diagnose(const std::string& cause);
  int64_t rank_, world_size_;
  std::chrono::milliseconds period_;
  int64_t beats_ = 0;
  std::atomic<bool> failing_{false}, stopped_{false};
  int wake_[2] = {-1, -1};  // the pipe: a signal's number, or 0 to stop
  std::thread thread_;
};

// A distributed run: the launcher's environment, the job's store (kept open: rank 0 may be hosting it), the watchdog
// and, once started, the process group.
struct Job {
  Launch launch;
  c10::intrusive_ptr<c10d::Store> store;
  std::unique_ptr<Watchdog> watchdog;
  std::string backend;
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  torch::Device device = torch::kCPU;
  int64_t rank() const { return launch.rank; }
  int64_t world_size() const { return launch.world_size; }
};

// The running job (null in a single-process run): main() and the signal handler name its failures through it.
Job* current_job();

// The job this process is a rank of (its store and watchdog), or null for a single-process run.
Job* connect(const Args& args);

// The GPU of this rank: LOCAL_RANK, when the machine has that many (UsageError otherwise).
int64_t gpu_index(const Job& job);

// The process group on the run's device: gloo on CPU, NCCL on CUDA (the rank's GPU). Checks first that every rank
// agrees with rank 0 about the world size, and that this build has the backend.
void start(Job& job, const Args& args, const torch::Device& device);

// The line an error ends this process with: the cause itself in a single-process run; in a distributed one the job's
// line naming the rank that failed, or none when another rank names it. `collective`: any error but a usage error
// may come from another rank (a collective's error or timeout, a signal), so the watchdog diagnoses it.
std::optional<std::string> failure_line(const std::string& cause, bool collective);

// The rank leaves the job: the watchdog stops (the process group goes with the process).
void finish(Job& job);

// From a signal handler (async-signal-safe): in a distributed run, hands the signal to the watchdog, which names
// the failure and ends the process; false in a single-process run.
bool interrupt_job(int signal_number);

// The command line as this rank runs it: rank 0 writes the files (results, dumps, traces); the other ranks only their
// weights (their BatchNorm statistics are their own), beside rank 0's as PATH.rank<r>.
Args rank_args(const Args& args, const Job* job);

// --no-sync-blocks N: blocks of N steps with gradient sync, then N without, in turn (0: every step syncs).
bool is_synced_step(int64_t step, int64_t no_sync_blocks);

// Each tensor summed over the ranks, in place (the epoch's loss and correct counts).
void sum_across_ranks(Job& job, std::vector<torch::Tensor> tensors);

// Every rank's list of values (the same length on every rank), in rank order.
std::vector<std::vector<double>> gather_rows(Job& job, const std::vector<double>& values);

void barrier(Job& job);

// This rank's training step times (Python: StepClock). On CPU the host clock at each step's end (a CPU step is done
// when its last op returns); on CUDA an event on the stream per step, read once the epoch's clock has synchronized,
// so that the steps stay free of host syncs.
class StepClock {
 public:
  explicit StepClock(const torch::Device& device);
  ~StepClock();
  void mark();
  // The intervals between the marks (call after the device has finished them); the marks are cleared.
  std::vector<double> seconds();

 private:
  struct Events;
  bool cuda_;
  std::vector<int64_t> host_marks_;
  std::unique_ptr<Events> events_;
};

// The model as one replica of the job, and this rank's record of its training steps (Python: DataParallel).
// forward() runs the model with DistributedDataParallel's forward-pass work (the reducer prepared, buckets rebuilt
// once, rank 0's BatchNorm buffers broadcast); after_backward() averages the gradients where the reducer does not
// (the flat ablation: one allreduce after backward). A training step of the timed run is framed by begin_step
// (--no-sync-blocks: what DDP's no_sync() does in the blocks without sync) and end_step (its time); warm-up steps
// always sync.
class DataParallel {
 public:
  DataParallel(ResNet& model, Job& job, const Args& args);
  torch::Tensor forward(const torch::Tensor& x);
  void after_backward();
  void set_sync(bool synced);
  void start_epoch();
  void begin_step(int64_t step);
  void end_step();
  // After the epoch's clock: its step times and losses kept, its loss and counts summed over the ranks.
  void end_epoch(const torch::Tensor& loss_sum, const torch::Tensor& correct, int64_t& images,
                 const std::vector<double>& step_losses);
  // The results' `distributed` section (every rank calls it; rank 0's is the one written).
  Json section(const Args& args);
  Job& job;

 private:
  void broadcast(const std::vector<torch::Tensor>& tensors);
  ResNet& model_;
  std::string grad_sync_;
  int64_t no_sync_blocks_;
  std::vector<torch::Tensor> params_, buffers_;
  bool synced_ = true;
  bool forward_sync_ = true;  // DDP's require_forward_param_sync: the last forward was a synced one
  std::shared_ptr<c10d::Reducer> reducer_;
  std::shared_ptr<c10d::Logger> logger_;
  StepClock clock_;
  std::vector<double> step_seconds_, step_losses_;
  std::vector<bool> step_synced_;
};

// The backends (cpp/dist_gloo.cpp, cpp/dist_nccl.cpp): gloo needs gloo's headers, which torch's wheels do not ship,
// and NCCL a CUDA build with nccl.h; without one, make_* throws why (backend_problems).
c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                    std::chrono::milliseconds timeout);
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                    std::chrono::milliseconds timeout, const torch::Device& device);

// {device type ("cpu", "cuda"): why this build has no backend for it} (Python: backend_problems).
std::map<std::string, std::string> backend_problems();
// --help's lines on the backends: each feature, available or why not.
std::string backends_text();
// The results' `unavailable` entry for the run's device type, when this build cannot train data-parallel there.
Json::Array unavailable(const torch::Device& device);
