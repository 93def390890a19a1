#include "dist.h"

#include <ATen/record_function.h>
#include <poll.h>
#include <unistd.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>

#ifdef BENCH_WITH_CUDA
#include <c10/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <type_traits>

#include "results.h"
#include "runtime.h"
#include "vocab.h"

namespace {

constexpr int64_t kMaxRanks = int64_t(1) << 20;
constexpr size_t kBroadcastBucketBytes = size_t(250) << 20;  // DistributedDataParallel's broadcast_bucket_size
constexpr std::chrono::milliseconds kHeartbeatMax{1000};     // at most, a quarter of --dist-timeout when shorter
// The backend and feature of a device type ("cpu", "cuda"; vocab: kDistBackends; Python: DIST_BACKENDS[t],
// DIST_FEATURES[t]). What a build without the backend cannot do is the feature (--help, the results' `unavailable`).
const DistBackend& dist_backend(std::string_view device_type) {
  for (const auto& backend : kDistBackends) {
    if (backend.device_type == device_type) return backend;
  }
  throw std::logic_error(c10::str("no data-parallel backend for device type ", device_type));
}

std::string feature(std::string_view device_type) { return std::string(dist_backend(device_type).feature); }

// A distributed run cannot start or go on (the store, the process group).
struct JobError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::unique_ptr<Job> g_job;
std::atomic<Watchdog*> g_watchdog{nullptr};  // read by the signal handler

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value && *value ? std::string(value) : fallback;
}

std::string at_step(int64_t step) {
  return step >= 0 ? c10::str("at step ", step) : std::string("before the first training step");
}

std::string last_seen(int64_t step) {
  return step >= 0 ? c10::str("last at step ", step) : std::string("before the first training step");
}

// A backend's error without its source location and advice ("[pair.cc:561] Connection closed by peer
// [127.0.0.1]:7896. This is typically caused by ..."): its first sentence.
std::string short_cause(const std::string& cause) {
  if (cause.empty() || cause[0] != '[') return cause;
  const size_t open = cause.find("] ");
  const std::string rest = open == std::string::npos ? cause : cause.substr(open + 2);
  return rest.substr(0, rest.find(". "));
}

std::string signal_name(int signal_number) { return signal_number == SIGINT ? "SIGINT" : "SIGTERM"; }

// The job's store: the torchrun agent's (every rank a client), else hosted by rank 0, as torch.distributed's env://
// rendezvous does.
c10::intrusive_ptr<c10d::Store> job_store(const Launch& launch, int64_t timeout_s) {
  return connect_store(launch, timeout_s, launch.rank == 0 && !launch.agent_store);
}

// Every rank agrees with rank 0 about the world size (ranks started by hand with different WORLD_SIZEs would
// otherwise wait for each other until the timeout).
void check_world_size(Job& job) {
  job.store->set(c10::str("world_size/", job.rank()), std::to_string(job.world_size()));
  const int64_t ours = job.world_size(), theirs = std::stoll(job.store->get_to_str("world_size/0"));
  if (ours != theirs) {
    throw UsageError(c10::str("WORLD_SIZE ", ours, " here but ", theirs,
                              " on rank 0: the ranks were started with different world sizes"));
  }
}

// c10d::Reducer's constructor gained arguments over torch versions: 11 (up to use_python_reducer), 12 (+ the
// per-bucket caps for rebuilding; torch 2.11) and 13 (+ batched_grad_copy, defaulted; torch 2.14). The call with 12
// compiles on both; a torch with 11 gets that one.
std::shared_ptr<c10d::Reducer> make_reducer(std::vector<at::Tensor> params, std::vector<std::vector<size_t>> buckets,
                                            const c10::intrusive_ptr<c10d::ProcessGroup>& group) {
  std::vector<bool> sparse(params.size(), false);
  using Names = std::unordered_map<size_t, std::string>;  // filled only under TORCH_DISTRIBUTED_DEBUG
  if constexpr (std::is_constructible_v<c10d::Reducer, std::vector<at::Tensor>, std::vector<std::vector<size_t>>,
                                        c10::intrusive_ptr<c10d::ProcessGroup>, std::vector<bool>, int64_t, bool, bool,
                                        Names, int64_t, bool, bool, std::vector<int64_t>>) {
    return std::make_shared<c10d::Reducer>(std::move(params), std::move(buckets), group, sparse,
                                           c10d::kDefaultBucketBytesCap, /*find_unused_parameters=*/false,
                                           /*gradient_as_bucket_view=*/false, Names{}, c10d::kDefaultFirstBucketBytes,
                                           /*skip_all_reduce_unused_params=*/false, /*use_python_reducer=*/false,
                                           /*bucket_bytes_cap_list=*/std::vector<int64_t>{});
  } else {
    return std::make_shared<c10d::Reducer>(std::move(params), std::move(buckets), group, sparse,
                                           c10d::kDefaultBucketBytesCap, false, false, Names{},
                                           c10d::kDefaultFirstBucketBytes, false, false);
  }
}

}  // namespace

std::optional<Launch> read_launch() {
  if (!std::getenv("RANK") && !std::getenv("WORLD_SIZE")) return std::nullopt;
  std::string missing;
  for (const char* name : {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}) {
    if (env_or(name, "").empty()) missing += c10::str(missing.empty() ? "" : ", ", name);
  }
  if (!missing.empty()) {
    throw UsageError(
        c10::str("a distributed run needs RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT in its environment "
                 "(torchrun sets them): ",
                 missing, " not set"));
  }
  Launch launch;
  launch.world_size = parse_int("WORLD_SIZE", env_or("WORLD_SIZE", ""), 1, kMaxRanks);
  launch.rank = parse_int("RANK", env_or("RANK", ""), 0, kMaxRanks);
  if (launch.rank >= launch.world_size) {
    throw UsageError(c10::str("RANK ", launch.rank, " is not below WORLD_SIZE ", launch.world_size,
                              ": the launcher's world size does not match its ranks"));
  }
  launch.local_world_size = parse_int("LOCAL_WORLD_SIZE", env_or("LOCAL_WORLD_SIZE", std::to_string(launch.world_size)),
                                      1, launch.world_size);
  launch.local_rank =
      parse_int("LOCAL_RANK", env_or("LOCAL_RANK", std::to_string(launch.rank % launch.local_world_size)), 0,
                launch.local_world_size - 1);
  if (!env_or("GROUP_WORLD_SIZE", "").empty()) {
    launch.nodes = parse_int("GROUP_WORLD_SIZE", env_or("GROUP_WORLD_SIZE", ""), 1, launch.world_size);
  }
  launch.master_addr = env_or("MASTER_ADDR", "");
  launch.master_port = parse_int("MASTER_PORT", env_or("MASTER_PORT", ""), 1, 65535);
  launch.agent_store = env_or("TORCHELASTIC_USE_AGENT_STORE", "") == "True";
  launch.restart = parse_int("TORCHELASTIC_RESTART_COUNT", env_or("TORCHELASTIC_RESTART_COUNT", "0"), 0, kMaxCount);
  return launch;
}

c10::intrusive_ptr<c10d::Store> connect_store(const Launch& launch, int64_t timeout_s, bool host) {
  c10d::TCPStoreOptions options;
  options.port = uint16_t(launch.master_port);
  options.isServer = host;
  options.numWorkers = size_t(launch.world_size);
  options.waitWorkers = false;
  options.timeout = std::chrono::seconds(timeout_s);
  options.multiTenant = host;
  try {
    auto store = c10::make_intrusive<c10d::TCPStore>(launch.master_addr, options);
    return c10::make_intrusive<c10d::PrefixStore>(c10::str("bench/", launch.restart, "/"), store);
  } catch (const c10::Error& e) {
    throw JobError(c10::str("rank ", launch.rank, " cannot ", host ? "host" : "reach", " the job's store at ",
                            launch.master_addr, ":", launch.master_port,
                            " (MASTER_ADDR:MASTER_PORT): ", first_line(e.what_without_backtrace())));
  }
}

// ---- the watchdog: one line per failed job -------------------------------------------------------------------

Watchdog::Watchdog(const Launch& launch, int64_t timeout_s)
    : rank_(launch.rank),
      world_size_(launch.world_size),
      period_(std::min<std::chrono::milliseconds>(kHeartbeatMax, std::chrono::milliseconds(timeout_s * 1000 / 4))) {
  // A connection of its own: a store request of the main thread (a rendezvous waiting for the other ranks) holds its
  // connection for as long as it waits.
  store = connect_store(launch, timeout_s, /*host=*/false);
  if (::pipe(wake_) != 0) throw JobError("cannot create the watchdog's pipe");
  beat();
  thread_ = std::thread([this] { run(); });
  g_watchdog = this;
}

Watchdog::~Watchdog() {
  g_watchdog = nullptr;
  if (thread_.joinable()) {
    const char stop = 0;
    (void)!::write(wake_[1], &stop, 1);
    thread_.join();
  }
  ::close(wake_[0]);
  ::close(wake_[1]);
}

void Watchdog::beat() { store->set(c10::str("beat/", rank_), c10::str(++beats_, " ", step.load())); }

void Watchdog::run() {
  for (;;) {
    pollfd wake{wake_[0], POLLIN, 0};
    if (::poll(&wake, 1, int(period_.count())) > 0) {
      char signal_number = 0;
      if (::read(wake_[0], &signal_number, 1) != 1 || signal_number == 0) return;  // finish() or the destructor
      if (failing_) continue;  // the main thread is naming a failure: let it finish
      const auto line = fail(c10::str("interrupted by ", signal_name(signal_number)), /*collective=*/true);
      if (pending_tmp()[0] != '\0') ::unlink(pending_tmp());  // interrupted while writing the results
      if (line) std::fprintf(stderr, "%s: error: %s; no results written\n", kProgram.data(), line->c_str());
      std::fflush(stderr);
      ::_exit(128 + signal_number);
    }
    if (stopped_) return;
    try {
      beat();
    } catch (const std::exception&) {
      return;  // the store is gone: the job is ending
    }
  }
}

void Watchdog::interrupt(int signal_number) {
  const char byte = char(signal_number);
  (void)!::write(wake_[1], &byte, 1);
}

void Watchdog::finish() {
  stopped_ = true;
  g_watchdog = nullptr;
  if (thread_.joinable()) {
    const char stop = 0;
    (void)!::write(wake_[1], &stop, 1);
    thread_.join();
  }
  try {
    store->set(c10::str("beat/", rank_), "done");
  } catch (const std::exception&) {  // rank 0, which hosted the store, may be gone already: nobody asks
  }
}

namespace {

// {rank: (heartbeat counter, step), or none when done} of every other rank that has started.
std::map<int64_t, std::optional<std::pair<int64_t, int64_t>>> peers(c10d::Store& store, int64_t rank,
                                                                    int64_t world_size) {
  std::map<int64_t, std::optional<std::pair<int64_t, int64_t>>> found;
  for (int64_t r = 0; r < world_size; ++r) {
    const std::string key = c10::str("beat/", r);
    if (r == rank || !store.check({key})) continue;
    const std::string value = store.get_to_str(key);
    if (value == "done") {
      found[r] = std::nullopt;
    } else {
      std::istringstream in(value);
      std::pair<int64_t, int64_t> beat;
      in >> beat.first >> beat.second;
      found[r] = beat;
    }
  }
  return found;
}

}  // namespace

std::string Watchdog::diagnose(const std::string& cause) {
  const auto before = peers(*store, rank_, world_size_);
  for (int i = 0; i < 2; ++i) {  // two periods, with this rank's own heartbeat going on
    std::this_thread::sleep_for(period_);
    beat();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto after = peers(*store, rank_, world_size_);
  for (const auto& [r, beat] : after) {
    const auto was = before.find(r);
    if (beat && was != before.end() && was->second == beat) {
      return c10::str("rank ", r, " crashed or was killed: its heartbeat stopped (", last_seen(beat->second),
                      "); rank ", rank_, " saw: ", cause);
    }
  }
  std::optional<std::pair<int64_t, int64_t>> behind;  // (step, rank)
  for (const auto& [r, beat] : after) {
    if (beat && beat->second < step && (!behind || std::pair{beat->second, r} < *behind)) behind = {beat->second, r};
  }
  if (behind) {
    return c10::str("rank ", behind->second, " hung ", at_step(behind->first), " (rank ", rank_, " waited ",
                    at_step(step), "): ", cause);
  }
  for (int64_t r = 0; r < world_size_; ++r) {
    if (r != rank_ && !after.count(r))
      return c10::str("rank ", r, " never joined the job; rank ", rank_, " saw: ", cause);
  }
  return c10::str("rank ", rank_, ": ", cause);
}

std::optional<std::string> Watchdog::fail(const std::string& message, bool collective) {
  if (failing_.exchange(true)) {
    // The other thread (the main one, or this watchdog's on a signal) is naming the failure and ends the process
    // when it has printed: wait for it rather than end the process first.
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  const std::string cause = short_cause(message);
  try {
    if (store->check({"failure"})) return std::nullopt;
    const std::string line = collective ? diagnose(cause) : c10::str("rank ", rank_, ": ", cause);
    return store->compareSet("failure", "", line) == line ? std::optional(line) : std::nullopt;
  } catch (const std::exception&) {  // the store is gone (rank 0 hosted it): say what this rank knows
    return c10::str("rank ", rank_, ": ", cause);
  }
}

// ---- the job ---------------------------------------------------------------------------------------------------

Job* current_job() { return g_job.get(); }

Job* connect(const Args& args) {
  const auto launch = read_launch();
  if (!launch) return nullptr;
  if (args.data_pipeline != "matched") {
    throw UsageError(c10::str("--data-pipeline ", args.data_pipeline,
                              " runs single-process only: a distributed run shards the matched pipeline"));
  }
  auto store = job_store(*launch, args.dist_timeout);
  g_job.reset(new Job{*launch, store, std::make_unique<Watchdog>(*launch, args.dist_timeout)});
  return g_job.get();
}

int64_t gpu_index(const Job& job) {
  const int64_t count = int64_t(torch::cuda::device_count());
  const int64_t local_rank = job.launch.local_rank;
  if (local_rank >= count) {
    throw UsageError(c10::str("LOCAL_RANK ", local_rank, " needs GPU ", local_rank, ", but this machine has ", count,
                              ": start at most ", count, " rank(s) per node (torchrun --nproc-per-node ", count, ")"));
  }
  return local_rank;
}

void start(Job& job, const Args& args, const torch::Device& device) {
  const bool cuda = device.is_cuda();
  const auto problems = backend_problems();
  if (const auto problem = problems.find(cuda ? "cuda" : "cpu"); problem != problems.end()) {
    throw UsageError(feature(problem->first) + " is unavailable: " + problem->second);
  }
  check_world_size(job);
  job.backend = std::string(dist_backend(cuda ? "cuda" : "cpu").backend);
  job.device = device;
  const auto timeout = std::chrono::milliseconds(args.dist_timeout * 1000);
  const int rank = int(job.rank()), size = int(job.world_size());
  // The stores' prefixes and the order of the calls are torch.distributed.init_process_group's.
  auto group_store =
      c10::make_intrusive<c10d::PrefixStore>("0/", c10::make_intrusive<c10d::PrefixStore>("default_pg", job.store));
  job.group = c10::make_intrusive<c10d::ProcessGroup>(group_store, rank, size);
  const auto type = cuda ? c10d::ProcessGroup::BackendType::NCCL : c10d::ProcessGroup::BackendType::GLOO;
  job.group->setDefaultBackend(type);
  if (cuda) job.group->setBoundDeviceId(device);
  auto backend_store = c10::make_intrusive<c10d::PrefixStore>(cuda ? "cuda/" : "cpu/", group_store);
  auto backend = cuda ? make_nccl_backend(backend_store, rank, size, timeout, device)
                      : make_gloo_backend(backend_store, rank, size, timeout);
  job.group->setBackend(device.type(), type, backend);
  job.group->setGroupName("0");
  job.group->setGroupDesc("default_pg");
  if (cuda) backend->eagerConnectSingleDevice(device);
}

std::optional<std::string> failure_line(const std::string& cause, bool collective) {
  if (!g_job) return cause;
  return g_job->watchdog->fail(cause, collective);
}

void finish(Job& job) { job.watchdog->finish(); }

bool interrupt_job(int signal_number) {
  Watchdog* watchdog = g_watchdog.load();
  if (watchdog == nullptr) return false;
  watchdog->interrupt(signal_number);
  return true;
}

Args rank_args(const Args& args, const Job* job) {
  if (job == nullptr || job->rank() == 0) return args;
  Args mine = args;
  mine.results = mine.dump_init = mine.dump_batch = mine.dump_logits = mine.trace_dir = "";
  mine.trace_steps = 0;
  if (!mine.save_weights.empty()) mine.save_weights += c10::str(".rank", job->rank());
  return mine;
}

// ---- one replica of the model, and the run's own collectives ------------------------------------------------

bool is_synced_step(int64_t step, int64_t no_sync_blocks) {
  return no_sync_blocks == 0 || (step / no_sync_blocks) % 2 == 0;
}

void sum_across_ranks(Job& job, std::vector<torch::Tensor> tensors) {
  for (auto& t : tensors) {
    std::vector<at::Tensor> one{t};
    job.group->allreduce(one)->wait();
  }
}

std::vector<std::vector<double>> gather_rows(Job& job, const std::vector<double>& values) {
  // --eval-only: no step on any rank (gloo gathers no empty tensor)
  if (values.empty()) return std::vector<std::vector<double>>(size_t(job.world_size()));
  const auto mine = torch::tensor(values, torch::kFloat64).to(job.device);
  std::vector<std::vector<at::Tensor>> rows(1);
  for (int64_t r = 0; r < job.world_size(); ++r) rows[0].push_back(torch::empty_like(mine));
  std::vector<at::Tensor> input{mine};
  job.group->allgather(rows, input)->wait();
  std::vector<std::vector<double>> out;
  for (const auto& row : rows[0]) {
    const auto cpu = row.cpu();
    out.emplace_back(cpu.data_ptr<double>(), cpu.data_ptr<double>() + cpu.numel());
  }
  return out;
}

void barrier(Job& job) { job.group->barrier()->wait(); }

#ifdef BENCH_WITH_CUDA
struct StepClock::Events {
  std::vector<c10::cuda::CUDAEvent> marks;
};
#else
struct StepClock::Events {};
#endif

StepClock::StepClock(const torch::Device& device) : cuda_(device.is_cuda()), events_(std::make_unique<Events>()) {}

StepClock::~StepClock() = default;

void StepClock::mark() {
#ifdef BENCH_WITH_CUDA
  if (cuda_) {
    events_->marks.emplace_back(cudaEventDefault);  // timing enabled, as torch.cuda.Event(enable_timing=True)
    events_->marks.back().record();
    return;
  }
#endif
  host_marks_.push_back(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

std::vector<double> StepClock::seconds() {
  std::vector<double> out;
#ifdef BENCH_WITH_CUDA
  if (cuda_) {
    auto marks = std::move(events_->marks);
    events_->marks.clear();
    for (size_t i = 1; i < marks.size(); ++i) out.push_back(double(marks[i - 1].elapsed_time(marks[i])) / 1e3);
    return out;
  }
#endif
  for (size_t i = 1; i < host_marks_.size(); ++i) out.push_back(double(host_marks_[i] - host_marks_[i - 1]) / 1e9);
  host_marks_.clear();
  return out;
}

DataParallel::DataParallel(ResNet& model, Job& job, const Args& args)
    : job(job),
      model_(model),
      grad_sync_(args.grad_sync),
      no_sync_blocks_(args.no_sync_blocks),
      params_(model->parameters()),
      buffers_(model->buffers()),
      clock_(job.device) {
  if (grad_sync_ != "ddp") {  // what DDP's construction does besides the reducer: rank 0's parameters and buffers
    std::vector<torch::Tensor> states = params_;
    states.insert(states.end(), buffers_.begin(), buffers_.end());
    broadcast(states);
    return;
  }
  // DistributedDataParallel.__init__ with its defaults, call by call: the parameters' shapes checked across ranks,
  // rank 0's parameters and buffers broadcast, the first iteration's buckets (one: no unused parameters to find),
  // reversed, the reducer with the 25 MiB / 1 MiB caps, its logger.
  c10d::verify_params_across_processes(job.group, params_, std::nullopt);
  std::vector<torch::Tensor> states = params_;
  states.insert(states.end(), buffers_.begin(), buffers_.end());
  broadcast(states);
  auto [buckets, limits] = c10d::compute_bucket_assignment_by_size(
      params_, {size_t(std::numeric_limits<int64_t>::max())}, std::vector<bool>(params_.size(), false));
  std::reverse(buckets.begin(), buckets.end());
  reducer_ = make_reducer(params_, buckets, job.group);
  logger_ = std::make_shared<c10d::Logger>(reducer_);
  reducer_->set_logger(logger_);
  const bool cuda = job.device.is_cuda();
  logger_->set_construction_data_and_log("ResNet", cuda ? std::vector<int>{job.device.index()} : std::vector<int>{},
                                         cuda ? job.device.index() : -1, /*broadcast_buffers=*/true,
                                         /*has_sync_bn=*/false, /*static_graph=*/false);
}

void DataParallel::broadcast(const std::vector<torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  c10d::broadcast_coalesced(job.group, tensors, kBroadcastBucketBytes, 0);
}

torch::Tensor DataParallel::forward(const torch::Tensor& x) {
  at::RecordFunction scope(at::RecordScope::USER_SCOPE);  // as Python's record_function in DDP.forward
  if (scope.isActive()) scope.before("DistributedDataParallel.forward");
  // DDP's _pre_forward: the reducer prepared (while syncing), its buckets rebuilt once in gradient order after the
  // first backward, rank 0's buffers broadcast when the last forward was a synced one.
  const bool grad = torch::GradMode::is_enabled();
  if (reducer_ && grad && synced_) {
    logger_->set_runtime_stats_and_log();
    reducer_->prepare_for_forward();
  }
  if (reducer_ && grad) reducer_->rebuild_buckets();
  if (forward_sync_ && !buffers_.empty()) broadcast(buffers_);
  auto out = model_->forward(x);
  // DDP's _post_forward: the reducer expects this backward's gradients (without unused parameters to find).
  forward_sync_ = grad && synced_;
  if (reducer_ && forward_sync_) reducer_->prepare_for_backward({});
  return out;
}

void DataParallel::after_backward() {
  if (reducer_ || !synced_) return;
  // The flat ablation's allreduce: every gradient in one buffer, pre-divided by the world size as DDP's buckets are,
  // summed across ranks, copied back.
  std::vector<torch::Tensor> grads;
  for (const auto& p : params_) grads.push_back(p.grad().reshape(-1));
  auto flat = torch::cat(grads).mul_(1.0 / double(job.world_size()));
  std::vector<at::Tensor> one{flat};
  job.group->allreduce(one)->wait();
  int64_t offset = 0;
  for (const auto& p : params_) {
    auto grad = p.grad();
    grad.copy_(flat.slice(0, offset, offset + grad.numel()).view_as(grad));
    offset += grad.numel();
  }
}

void DataParallel::set_sync(bool synced) { synced_ = synced; }

void DataParallel::start_epoch() { clock_.mark(); }

void DataParallel::begin_step(int64_t step) {
  job.watchdog->step = step;
  set_sync(is_synced_step(step, no_sync_blocks_));
  step_synced_.push_back(synced_);
}

void DataParallel::end_step() { clock_.mark(); }

void DataParallel::end_epoch(const torch::Tensor& loss_sum, const torch::Tensor& correct, int64_t& images,
                             const std::vector<double>& step_losses) {
  set_sync(true);
  const auto seconds = clock_.seconds();
  step_seconds_.insert(step_seconds_.end(), seconds.begin(), seconds.end());
  step_losses_.insert(step_losses_.end(), step_losses.begin(), step_losses.end());
  sum_across_ranks(job, {loss_sum, correct});
  images *= job.world_size();
}

Json DataParallel::section(const Args& args) {
  const auto& launch = job.launch;
  Json::Array seconds, losses, synced;
  for (const auto& row : gather_rows(job, step_seconds_)) seconds.emplace_back(row);
  for (const bool s : step_synced_) synced.emplace_back(s);
  if (args.record_step_losses) {
    for (const auto& row : gather_rows(job, step_losses_)) losses.emplace_back(row);
  }
  return Json::object({{"world_size", launch.world_size},
                       {"local_world_size", launch.local_world_size},
                       {"nodes", launch.nodes ? Json(*launch.nodes) : Json()},
                       {"backend", job.backend},
                       {"grad_sync", grad_sync_},
                       {"per_rank_batch_size", args.batch_size},
                       {"global_batch_size", args.batch_size * launch.world_size},
                       {"no_sync_blocks", no_sync_blocks_},
                       {"timeout_seconds", args.dist_timeout},
                       {"step_seconds", seconds},
                       {"step_synced", synced},
                       {"step_losses", args.record_step_losses ? Json(losses) : Json()}});
}

// ---- the backends this build has ----------------------------------------------------------------------------

std::map<std::string, std::string> backend_problems() {
  std::map<std::string, std::string> problems;
#ifndef BENCH_WITH_GLOO
  problems["cpu"] =
      "this bench_train was built without gloo's headers (torch's wheels do not ship them): install libgloo-dev "
      "or pass -DBENCH_GLOO_INCLUDE_DIR=DIR to CMake, then rebuild";
#endif
#ifndef BENCH_WITH_NCCL
  problems["cuda"] = "this bench_train was built without NCCL (a CPU torch, or no nccl.h in its wheel)";
#endif
  return problems;
}

std::string backends_text() {
  const auto problems = backend_problems();
  std::string text;
  for (const auto& backend : kDistBackends) {
    const auto problem = problems.find(std::string(backend.device_type));
    text += c10::str(text.empty() ? "" : "\n", backend.feature, ": ",
                     problem == problems.end() ? std::string("available") : "unavailable: " + problem->second);
  }
  return text;
}

Json::Array unavailable(const torch::Device& device) {
  const std::string kind = device.is_cuda() ? "cuda" : "cpu";
  const auto problems = backend_problems();
  if (!problems.count(kind)) return {};
  return {Json::object({{"feature", feature(kind)}, {"reason", problems.at(kind)}})};
}

#ifndef BENCH_WITH_GLOO
c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const c10::intrusive_ptr<c10d::Store>&, int, int,
                                                    std::chrono::milliseconds) {
  throw UsageError(feature("cpu") + " is unavailable: " + backend_problems().at("cpu"));
}
#endif

#ifndef BENCH_WITH_NCCL
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>&, int, int,
                                                    std::chrono::milliseconds, const torch::Device&) {
  throw UsageError(feature("cuda") + " is unavailable: " + backend_problems().at("cuda"));
}
#endif
