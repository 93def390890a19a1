#include "process.h"

#include <ATen/BlasBackend.h>
#include <ATen/LinalgBackend.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/anomaly_mode.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <dlfcn.h>
#include <link.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string_view>
#include <utility>
#include <vector>

#include "build_facts.h"
#include "flags.h"
#include "vocab.h"  // kWatchedEnvPrefixes, kTestHooks, kPlants (from bench/vocab.py)

extern char** environ;

namespace {

constexpr int64_t kDenormals = int64_t(1) << 20;  // elements computed on denormals: enough for every intra-op thread
constexpr uint32_t kPtNote = 4, kNtGnuBuildId = 3;
constexpr std::array<std::pair<const char*, const char*>, 9> kFp32Precisions = {{{"generic", "all"},
                                                                                 {"mkldnn", "all"},
                                                                                 {"mkldnn", "conv"},
                                                                                 {"mkldnn", "rnn"},
                                                                                 {"mkldnn", "matmul"},
                                                                                 {"cuda", "all"},
                                                                                 {"cuda", "conv"},
                                                                                 {"cuda", "rnn"},
                                                                                 {"cuda", "matmul"}}};

template <typename T>
T read_le(const std::string& bytes, size_t at) {  // x86-64 and aarch64 are little-endian, as the files checked are
  T value{};
  if (at + sizeof(T) <= bytes.size()) std::memcpy(&value, bytes.data() + at, sizeof(T));
  return value;
}

std::string hex(const std::string& bytes) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (const unsigned char c : bytes) out += {kHex[c >> 4], kHex[c & 15]};
  return out;
}

// The build id among one PT_NOTE segment's notes (name and descriptor padded to `align`), or "".
std::string note_build_id(const std::string& notes, size_t align) {
  const auto pad = [align](size_t n) { return (n + align - 1) / align * align; };
  size_t at = 0;
  while (at + 12 <= notes.size()) {
    const auto namesz = read_le<uint32_t>(notes, at), descsz = read_le<uint32_t>(notes, at + 4);
    const auto kind = read_le<uint32_t>(notes, at + 8);
    const size_t name_at = at + 12, desc_at = name_at + pad(namesz);
    if (kind == kNtGnuBuildId && notes.compare(name_at, namesz, std::string("GNU\0", 4)) == 0) {
      return hex(notes.substr(desc_at, descsz));
    }
    at = desc_at + pad(descsz);
  }
  return "";
}

std::string read_bytes(std::ifstream& in, uint64_t offset, uint64_t size) {
  std::string bytes(size, '\0');
  in.seekg(std::streamoff(offset));
  in.read(bytes.data(), std::streamsize(size));
  bytes.resize(size_t(in.gcount()));
  return bytes;
}

// elf_build_id's text ("" for none).
std::string build_id_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string header = read_bytes(in, 0, 64);
  if (header.size() < 64 || header.compare(0, 4, "\177ELF") != 0 || header[4] != 2 || header[5] != 1) {
    return "";
  }
  const auto phoff = read_le<uint64_t>(header, 0x20);
  const auto phentsize = read_le<uint16_t>(header, 0x36), phnum = read_le<uint16_t>(header, 0x38);
  for (uint16_t i = 0; i < phnum; ++i) {
    const std::string phdr = read_bytes(in, phoff + uint64_t(i) * phentsize, 56);
    if (phdr.size() < 56 || read_le<uint32_t>(phdr, 0) != kPtNote) continue;
    const std::string found = note_build_id(read_bytes(in, read_le<uint64_t>(phdr, 8), read_le<uint64_t>(phdr, 32)),
                                            read_le<uint64_t>(phdr, 48) == 8 ? 8 : 4);
    if (!found.empty()) return found;
  }
  return "";
}

std::string program_path() { return std::filesystem::canonical("/proc/self/exe").string(); }

std::optional<std::string> read_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string strip(const std::string& text) {
  const size_t first = text.find_first_not_of(" \t\r\n"), last = text.find_last_not_of(" \t\r\n");
  return first == std::string::npos ? "" : text.substr(first, last - first + 1);
}

Json text_lines(const std::string& text) {
  Json::Array lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!strip(line).empty()) lines.emplace_back(strip(line));
  }
  return lines;
}

// Every ELF object mapped executable into this process but the program itself, by path, with its build id, read
// from the mapped file itself (/proc/self/map_files), which may since have been deleted or replaced; from the path
// where that cannot be opened.
Json loaded_libraries() {
  const std::string program = program_path();
  std::set<std::string> code;
  std::map<std::string, std::string> first;  // path -> the address range of its mapping at offset 0
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    std::istringstream fields(line);
    std::string range, perms, offset, dev, inode;
    fields >> range >> perms >> offset >> dev >> inode;
    std::string path;
    std::getline(fields >> std::ws, path);
    if (path.rfind('/', 0) != 0) continue;
    if (std::strtoull(offset.c_str(), nullptr, 16) == 0) first.emplace(path, range);
    if (perms.find('x') != std::string::npos && path != program) code.insert(path);
  }
  Json::Array libraries;
  for (const auto& path : code) {
    std::string id = first.count(path) ? build_id_of("/proc/self/map_files/" + first[path]) : "";
    if (id.empty()) id = build_id_of(path);
    libraries.push_back(Json::object({{"path", path}, {"build_id", id.empty() ? Json() : Json(id)}}));
  }
  return libraries;
}

// The file dladdr names for a code address (resolved), or empty.
std::string defining_file(const void* address) {
  Dl_info info{};
  if (address == nullptr || ::dladdr(address, &info) == 0 || info.dli_fname == nullptr) return {};
  std::error_code error;
  const auto path = std::filesystem::canonical(info.dli_fname, error);
  return error ? std::string(info.dli_fname) : path.string();
}

// The file that defines the malloc this process calls: dladdr of the global scope's `malloc`. A program built
// without PIE holds a canonical PLT entry for it, which only jumps on, so where dladdr names the program, the
// first object after it in the link map that defines `malloc` itself.
Json malloc_library() {
  const std::string found = defining_file(::dlsym(RTLD_DEFAULT, "malloc"));
  std::error_code error;
  if (found != std::filesystem::canonical("/proc/self/exe", error).string()) {
    return found.empty() ? Json() : Json(found);
  }
  link_map* link = nullptr;
  if (::dlinfo(::dlopen(nullptr, RTLD_LAZY), RTLD_DI_LINKMAP, &link) != 0 || link == nullptr) return Json(found);
  for (link = link->l_next; link != nullptr; link = link->l_next) {  // after the program
    void* handle = link->l_name != nullptr ? ::dlopen(link->l_name, RTLD_LAZY | RTLD_NOLOAD) : nullptr;
    if (handle == nullptr) continue;
    const std::string here = defining_file(::dlsym(handle, "malloc"));
    ::dlclose(handle);
    if (!here.empty() && here == std::filesystem::canonical(link->l_name, error).string()) return Json(here);
  }
  return Json(found);
}

std::string dtype_name(at::ScalarType type) { return std::string(c10::getDtypeNames(type).first); }

// The calling thread's autocast dtype on that device type, or null when autocast is off there.
Json autocast_dtype(at::DeviceType device_type) {
  if (!at::autocast::is_autocast_enabled(device_type)) return nullptr;
  return dtype_name(at::autocast::get_autocast_dtype(device_type));
}

// The fraction of results that flush-to-zero / denormals-are-zero turned into 0, measured by computing on denormals
// on every intra-op thread (no getter sees MXCSR, or what a -ffast-math library set at load).
double denormals_flushed() {
  const auto x = torch::full({kDenormals}, 1e-40, torch::kFloat32) * 1.0;
  return 1.0 - double(x.count_nonzero().item<int64_t>()) / double(kDenormals);
}

// at::BlasBackend::Cublas -> Cublas (Python's enum names).
std::string last_name(const std::string& qualified) { return qualified.substr(qualified.rfind(':') + 1); }

Json reduction_option(at::CuBLASReductionOption option) {  // Python: (allow reduced precision, allow split-K)
  return Json::Array{option == at::CuBLASReductionOption::AllowReducedPrecisionWithSplitK,
                     option != at::CuBLASReductionOption::DisallowReducedPrecisionDisallowSplitK};
}

// Every process-wide setting of torch's global context that chooses kernels or numerics, the CPU capability, the
// default dtype, and the denormal mode (Python: the torch._C getters that bind these).
Json backend_flags() {
  auto& ctx = at::globalContext();
  Json::Object fp32;
  for (const auto& [backend, op] : kFp32Precisions) {
    fp32.emplace_back(c10::str(backend, "/", op),
                      at::precision2str(ctx.float32Precision(at::str2backend(backend), at::str2op(op))));
  }
  const auto matmul = ctx.float32MatmulPrecision();
  const char* matmul_precision = matmul == at::Float32MatmulPrecision::HIGHEST ? "highest"
                                 : matmul == at::Float32MatmulPrecision::HIGH  ? "high"
                                                                               : "medium";
#ifdef BENCH_WITH_CUDA
  const Json limit = int64_t(ctx.benchmarkLimitCuDNN());  // Python has the getter in CUDA builds only
#else
  const Json limit = nullptr;
#endif
  return Json::object({
      {"deterministic_algorithms", ctx.deterministicAlgorithms()},
      {"deterministic_warn_only", ctx.deterministicAlgorithmsWarnOnly()},
      {"deterministic_fill_uninitialized_memory", ctx.deterministicFillUninitializedMemory()},
      {"cudnn_enabled", ctx.userEnabledCuDNN()},
      {"cudnn_deterministic", ctx.deterministicCuDNN()},
      {"cudnn_benchmark", ctx.benchmarkCuDNN()},
      {"cudnn_benchmark_limit", limit},
      {"cudnn_allow_tf32", ctx.allowTF32CuDNN()},
      {"matmul_allow_tf32", ctx.allowTF32CuBLAS()},
      {"float32_matmul_precision", matmul_precision},
      {"fp32_precision", Json(fp32)},
      {"matmul_fp16_reduced_precision", reduction_option(ctx.allowFP16ReductionCuBLAS())},
      {"matmul_bf16_reduced_precision", reduction_option(ctx.allowBF16ReductionCuBLAS())},
      {"matmul_fp16_accumulation", ctx.allowFP16AccumulationCuBLAS()},
      {"cpu_fp16_reduced_precision", ctx.allowFP16ReductionCPU()},
      {"mkldnn_enabled", ctx.userEnabledMkldnn()},
      {"mkldnn_deterministic", ctx.deterministicMkldnn()},
      {"nnpack_enabled", ctx.userEnabledNNPACK()},
      {"blas_backend", last_name(at::BlasBackendToString(ctx.blasPreferredBackend()))},
      {"linalg_backend", last_name(at::LinalgBackendToString(ctx.linalgPreferredBackend()))},
      {"cpu_capability", at::get_cpu_capability()},
      {"default_dtype", dtype_name(c10::get_default_dtype_as_scalartype())},
      {"anomaly_check_nan", torch::autograd::AnomalyMode::should_check_nan()},
      {"denormals_flushed", denormals_flushed()},
  });
}

// The watched variables as the process sees them now (environ: what a library's getenv reads).
Json watched_environment() {
  std::map<std::string, std::string> found;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string text(*entry);
    const size_t eq = text.find('=');
    const std::string name = text.substr(0, eq);
    for (const auto prefix : kWatchedEnvPrefixes) {
      if (name.rfind(prefix, 0) == 0) {
        found[name] = eq == std::string::npos ? "" : text.substr(eq + 1);
        break;
      }
    }
  }
  Json::Object values(found.begin(), found.end());
  return Json::object({{"watched", std::vector<std::string>(kWatchedEnvPrefixes.begin(), kWatchedEnvPrefixes.end())},
                       {"values", Json(values)}});
}

// Sorted CPU numbers as the kernel's list format: 0-3,6.
std::string cpu_list(const std::vector<int>& cpus) {
  std::string out;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    out += c10::str(out.empty() ? "" : ",", cpus[i], j > i ? c10::str("-", cpus[j]) : "");
    i = j + 1;
  }
  return out;
}

std::vector<int> affinity() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
    }
  }
  return cpus;
}

// A field of /proc/self/status (e.g. Mems_allowed_list), or null.
Json status_field(const std::string& name) {
  std::istringstream in(read_text("/proc/self/status").value_or(""));
  for (std::string line; std::getline(in, line);) {
    const size_t colon = line.find(':');
    if (colon != std::string::npos && line.substr(0, colon) == name) return strip(line.substr(colon + 1));
  }
  return nullptr;
}

std::string scheduler_name(int policy) {
  switch (policy) {
    case SCHED_OTHER: return "SCHED_OTHER";
    case SCHED_FIFO: return "SCHED_FIFO";
    case SCHED_RR: return "SCHED_RR";
    case SCHED_BATCH: return "SCHED_BATCH";
    case SCHED_IDLE: return "SCHED_IDLE";
    default: return std::to_string(policy);
  }
}

// Where the process may run, and at what priority: CPU affinity, NUMA nodes, cgroup (cpuset), nice, policy.
Json placement() {
  const auto cpuset = strip(read_text("/proc/self/cpuset").value_or(""));
  return Json::object({{"affinity", cpu_list(affinity())},
                       {"mems_allowed", status_field("Mems_allowed_list")},
                       {"cpuset", cpuset.empty() ? Json() : Json(cpuset)},
                       {"cgroup", text_lines(read_text("/proc/self/cgroup").value_or(""))},
                       {"nice", int64_t(::getpriority(PRIO_PROCESS, 0))},
                       {"scheduler", scheduler_name(::sched_getscheduler(0))}});
}

// The bracketed choice of a kernel setting such as 'always [madvise] never'.
Json selected(const std::string& path) {
  const auto text = read_text(path).value_or("");
  const size_t open = text.find('['), close = text.find(']');
  if (open == std::string::npos || close == std::string::npos) return nullptr;
  return text.substr(open + 1, close - open - 1);
}

// Transparent huge pages (the system's mode and this process's opt-out) and the malloc in use.
Json memory() {
  return Json::object({{"thp_enabled", selected("/sys/kernel/mm/transparent_hugepage/enabled")},
                       {"thp_defrag", selected("/sys/kernel/mm/transparent_hugepage/defrag")},
                       {"thp_disabled_by_process", ::prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) > 0},
                       {"malloc", malloc_library()}});
}

Json test_hooks() {
  Json::Object hooks;
  for (const auto name : kTestHooks) {
    const char* value = std::getenv(std::string(name).c_str());
    if (value != nullptr && *value != '\0') hooks.emplace_back(std::string(name), value);
  }
  return hooks;
}

std::unique_ptr<ProcessRecord>& the_record() {
  static std::unique_ptr<ProcessRecord> record;
  return record;
}

}  // namespace

std::set<std::string> read_plants() {
  std::set<std::string> names;
  const char* value = std::getenv("BENCH_PLANT");
  std::string text = value ? value : "";
  std::string choices;
  for (const auto plant : kPlants) choices += c10::str(choices.empty() ? "" : ",", plant);
  for (size_t start = 0; start <= text.size();) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string name = text.substr(start, comma - start);
    if (!name.empty()) {
      if (std::find(kPlants.begin(), kPlants.end(), name) == kPlants.end()) {
        throw UsageError(c10::str("BENCH_PLANT must be comma-separated names from {", choices, "}, got '", name, "'"));
      }
      names.insert(name);
    }
    start = comma + 1;
  }
  return names;
}

Json elf_build_id(const std::string& path) {
  const std::string id = build_id_of(path);
  return id.empty() ? Json() : Json(id);
}

Json thread_state() {
  return Json::object({{"intra_op_threads", int64_t(at::get_num_threads())},
                       {"grad_enabled", at::GradMode::is_enabled()},
                       {"inference_mode", c10::InferenceMode::is_enabled()},
                       {"autocast_cpu", autocast_dtype(at::kCPU)},
                       {"autocast_cuda", autocast_dtype(at::kCUDA)},
                       {"anomaly_enabled", torch::autograd::AnomalyMode::is_enabled()},
                       {"profiler_enabled", torch::autograd::profiler::profilerEnabled()}});
}

std::string autograd_mode() {
  if (c10::InferenceMode::is_enabled()) return "inference";
  return at::GradMode::is_enabled() ? "grad" : "no_grad";
}

void plant_process_drifts(const std::set<std::string>& plants) {
  if (plants.count("cudnn-deterministic")) at::globalContext().setDeterministicCuDNN(true);
  if (plants.count("anomaly")) torch::autograd::AnomalyMode::set_enabled(true);
  if (plants.count("interop-threads")) at::set_num_interop_threads(at::get_num_interop_threads() + 1);
  if (plants.count("affinity")) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(affinity().front(), &set);
    ::sched_setaffinity(0, sizeof set, &set);
  }
  if (plants.count("thp")) ::prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
}

ProcessRecord::Window::Window(ProcessRecord& record, const std::string& kind, const std::string& name) {
  if (kind == "latency" && record.plants_.count("no-grad")) {  // no_grad instead of inference mode
    no_inference_.emplace(false);
    no_grad_.emplace();
  }
  std::lock_guard<std::mutex> lock(record.mutex_);
  if (!record.flags_) {
    record.flags_ = backend_flags();
    record.parallel_info_ = text_lines(at::get_parallel_info());
  }
  record.windows_.emplace_back(name, thread_state());
}

ProcessRecord::ProcessRecord(std::set<std::string> plants) : plants_(std::move(plants)) {
  plant_process_drifts(plants_);
}

void ProcessRecord::worker_thread(const std::string& where) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (plants_.count("worker-threads") && where.rfind("concurrency", 0) == 0 && !threads_.count(where)) {
    at::set_num_threads(at::get_num_threads() + 1);  // another count in this one worker thread
  }
  threads_[where].push_back(thread_state());
}

Json ProcessRecord::section() {
  std::lock_guard<std::mutex> lock(mutex_);
  Json::Object threads(threads_.begin(), threads_.end());
  return Json::object({{"program", program_path()},
                       {"libraries", loaded_libraries()},
                       {"torch_config", text_lines(at::show_config())},
                       {"parallel_info", parallel_info_ ? *parallel_info_ : text_lines(at::get_parallel_info())},
                       {"flags", flags_ ? *flags_ : backend_flags()},
                       {"interop_threads", int64_t(at::get_num_interop_threads())},
                       {"windows", Json(windows_)},
                       {"threads", Json(threads)},
                       {"environment", watched_environment()},
                       {"placement", placement()},
                       {"memory", memory()},
                       {"build", build_facts()},
                       {"gc", nullptr},
                       {"interpreter", nullptr},
                       {"test_hooks", test_hooks()}});
}

ProcessRecord* process_record() { return the_record().get(); }

ProcessRecord& start_record(std::set<std::string> plants) {
  the_record() = std::make_unique<ProcessRecord>(std::move(plants));
  return *the_record();
}

std::optional<ProcessRecord::Window> process_window(const std::string& kind, const std::string& name) {
  if (process_record() == nullptr) return std::nullopt;
  return std::optional<ProcessRecord::Window>(std::in_place, *process_record(), kind, name);
}

void process_worker_thread(const std::string& where) {
  if (process_record() != nullptr) process_record()->worker_thread(where);
}
