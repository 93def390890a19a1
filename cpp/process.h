// The process's own state, recorded for the results' `process` section: what else, besides the program, can make
// the same work run at another speed (docs/confounders.md). Twin of bench/process.py.
//
// Read at the start of each timed window (cheaply: a few getters of the calling thread) and once at the end (the
// loaded libraries and their build ids, torch's configuration, the environment, placement and memory, the build).
// suite/process.py compares the two languages' sections; suite/process_allow.toml lists what may differ, and why.
// Test hook BENCH_PLANT=NAME,... plants drifts in one process; a run with it says so (`test_hooks`).
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "json.h"

// BENCH_PLANT's names; an unknown one is a UsageError, as a bad flag is.
std::set<std::string> read_plants();

// The GNU build id (.note.gnu.build-id, hex) of an ELF file, read from its PT_NOTE segments; null when it has none
// or is not a 64-bit little-endian ELF file.
Json elf_build_id(const std::string& path);

// What the calling thread's ATen work depends on: its intra-op threads, autograd and inference mode, autocast,
// and the debugging that slows every op.
Json thread_state();

// The calling thread's autograd mode as a word: inference (inference mode), no_grad, or grad.
std::string autograd_mode();

// The process-wide drifts BENCH_PLANT asks for, at start-up (the others act in windows and threads).
void plant_process_drifts(const std::set<std::string>& plants);

// One run's record: the timed thread's state at each window's start, the other threads that run ATen ops, and
// (section) what the process is, read at the end. One per process: process_record().
class ProcessRecord {
 public:
  // A timed window of the calling thread (kind "epoch" or "latency"), open while it lives: its state is read at
  // construction, before the window's first clock read; the global flags and parallel info at the first window.
  class Window {
   public:
    Window(ProcessRecord& record, const std::string& kind, const std::string& name);

   private:
    std::optional<c10::InferenceMode> no_inference_;  // the no-grad plant: no_grad instead of inference mode
    std::optional<torch::NoGradGuard> no_grad_;
  };

  explicit ProcessRecord(std::set<std::string> plants);
  // Records the calling thread (one that runs ATen ops besides the timed one: a request thread of concurrent
  // inference, a DataLoader worker) under `where`. Thread-safe.
  void worker_thread(const std::string& where);
  // The results' `process` section, read at the end of the run.
  Json section();

 private:
  std::set<std::string> plants_;
  std::mutex mutex_;
  Json::Object windows_;
  std::map<std::string, Json::Array> threads_;
  std::optional<Json> flags_, parallel_info_;  // read at the first window
};

// The run's record; null until start_record (the suite's tools run no trainer).
ProcessRecord* process_record();
ProcessRecord& start_record(std::set<std::string> plants);

// A window of the run's record (nothing without one).
std::optional<ProcessRecord::Window> process_window(const std::string& kind, const std::string& name);
// worker_thread of the run's record (nothing without one).
void process_worker_thread(const std::string& where);
