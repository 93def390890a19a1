#include "weights.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <vector>

void save_tensor_dict(const NamedTensors& tensors, const std::string& path) {
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& [name, t] : tensors) dict.insert(name, t.detach().to(torch::kCPU).contiguous());

  // Not torch::pickle_save, the public API: it tags the dict with its C++ type
  // (torch.jit._pickle.restore_type_tag), which torch.load(weights_only=True) refuses ("Weights only load
  // failed", checked with torch 2.14). The same archive without the tag, written with the JIT's own pickler
  // and zip writer (not public API), is a plain dict to Python.
  std::vector<char> pickle;
  torch::jit::Pickler pickler([&](const char* buf, size_t n) { pickle.insert(pickle.end(), buf, buf + n); },
                              /*tensor_table=*/nullptr, /*type_renamer=*/nullptr, /*memoized_class_types=*/nullptr,
                              /*get_tensor_id=*/nullptr, /*tag_aggregates=*/false);
  pickler.protocol();
  pickler.pushIValue(dict);
  pickler.stop();

  // The zip container is built in memory: the writer must never fail half-way (it cannot unwind cleanly).
  std::vector<char> archive;
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* buf, size_t n) -> size_t {
    archive.insert(archive.end(), static_cast<const char*>(buf), static_cast<const char*>(buf) + n);
    return n;
  });
  torch::jit::writeArchiveAndTensors("data", pickle.data(), pickle.size(), pickler.tensorData(), writer);
  writer.writeEndOfFile();

  std::ofstream out(path, std::ios::binary);
  if (!out.write(archive.data(), std::streamsize(archive.size())) || !out.flush()) {
    throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
  }
}

void save_weights(const ResNet& model, const std::string& path) { save_tensor_dict(state_dict(model), path); }

namespace {

// torch.save writes a zip archive: it starts with a local file header and ends with the end-of-directory
// record (22 bytes, then a comment of at most 64 KiB, which torch never writes).
const std::string kZipStart = "PK\x03\x04";
const std::string kZipEnd = "PK\x05\x06";
constexpr size_t kZipEndSpan = 22 + 65535;

// Why `data`, a weights file's bytes, cannot be a torch archive ("" when it can be). Checked before torch
// reads it, so that an empty, foreign or truncated file gets one clear cause in both languages instead of
// torch's generic notices. Twin of archive_problem in bench/weights.py.
std::string archive_problem(const std::string& data) {
  if (data.empty()) return "the file is empty";
  if (data.rfind(kZipStart, 0) != 0) return "not a torch archive (torch.save writes a zip file)";
  if (data.find(kZipEnd, data.size() - std::min(data.size(), kZipEndSpan)) == std::string::npos) {
    return "truncated: the torch archive (a zip file) has no end record";
  }
  return "";
}

// The dict a weights file holds; std::runtime_error names the file and the cause.
c10::impl::GenericDict read_weights(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(c10::str("cannot read weights file ", path, ": ", std::strerror(errno)));
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (const auto problem = archive_problem(data); !problem.empty()) {
    throw std::runtime_error(c10::str("cannot read weights file ", path, ": ", problem));
  }
  c10::IValue loaded;
  try {
    loaded = torch::pickle_load(std::vector<char>(data.begin(), data.end()));
  } catch (const c10::Error& e) {
    const std::string cause = e.what_without_backtrace();
    throw std::runtime_error(c10::str("cannot read weights file ", path, ": torch cannot load it: ",
                                      cause.substr(0, std::min(cause.find('\n'), cause.find(". ")))));
  }
  if (!loaded.isGenericDict())
    throw std::runtime_error(c10::str("weights file ", path, " does not hold a dict of tensors"));
  return loaded.toGenericDict();
}

// Every key, shape and dtype of the model's state dict, and nothing else; shapes print as lists in both
// languages.
void check_fits(const NamedTensors& own, const c10::impl::GenericDict& loaded, const std::string& path,
                const std::string& model_name) {
  const std::string unfit = c10::str("weights file ", path, " does not fit ", model_name, ": ");
  for (const auto& [name, target] : own) {
    const auto it = loaded.find(name);
    if (it == loaded.end()) throw std::runtime_error(unfit + "missing " + name);
    const auto& got = it->value();
    if (!got.isTensor() || got.toTensor().sizes() != target.sizes() ||
        got.toTensor().scalar_type() != target.scalar_type()) {
      const std::string what = got.isTensor() ? c10::str(got.toTensor().sizes()) : got.tagKind();
      throw std::runtime_error(c10::str(unfit, name, " is ", what, ", expected ", target.sizes()));
    }
  }
  for (const auto& entry : loaded) {
    const std::string key = entry.key().isString() ? entry.key().toStringRef() : "<non-string key>";
    const bool known = std::any_of(own.begin(), own.end(), [&](const auto& e) { return e.first == key; });
    if (!known) throw std::runtime_error(unfit + "unexpected " + key);
  }
}

}  // namespace

void load_weights(ResNet& model, const std::string& path, const std::string& model_name) {
  const auto loaded = read_weights(path);
  const auto own = state_dict(model);
  check_fits(own, loaded, path, model_name);
  torch::NoGradGuard no_grad;
  for (auto& [name, target] : own) target.copy_(loaded.at(name).toTensor());
}
