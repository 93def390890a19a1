// The one vocabulary of bench_train: models, the training recipe, data-parallel backends, trace names, and every
// flag with its default, limits and results key. The values are bench/vocab.py's: `python -m bench.generate header`
// writes them into vocab_table.h in the build folder (CMake reruns it whenever bench/ changes); this file declares
// their types.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

// A CIFAR ResNet: the depth of each of its four stages (BasicBlocks per stage).
struct Model {
  std::string_view name;
  std::array<int64_t, 4> stages;
};

// Data-parallel training on one device type: its process group's backend and the feature that backend gives.
struct DistBackend {
  std::string_view device_type;
  std::string_view backend;
  std::string_view feature;
};

// int, float, text, choice, switch, ints (comma-separated ints; an empty text is the empty list where the
// default is empty), names (distinct comma-separated choices).
enum class FlagKind { kInt, kFloat, kText, kChoice, kSwitch, kInts, kNames };

// The parsed command line, one field per flag (generated in vocab_table.h; Python: flags.Args).
struct Args;
// The field of Args a flag's value goes to (C++ has no reflection: each row of the table names its field).
using Field = std::variant<int64_t Args::*, double Args::*, std::string Args::*, bool Args::*,
                           std::vector<int64_t> Args::*, std::vector<std::string> Args::*>;

// One flag. low..high bound an int and every item of ints, both included; a float lies in (low, high].
struct Flag {
  std::string_view name;
  FlagKind kind;
  std::string_view default_text;  // what the parser reads when the flag is not given ("": none, off, empty)
  int64_t low = 0;
  int64_t high = 0;
  std::span<const std::string_view> choices = {};
  Field field;
  std::string_view config_key;  // the key of the results' config that records it ("": config does not)
};

#include "vocab_table.h"  // generated: kProgram, kModels, the recipe, kMaxCount, kDistBackends, trace names, Args,
                          // kFlags, kHelp

// The file name of one AOTInductor package inside --aoti-dir (Python: vocab.aoti_package_name).
inline std::string aoti_package_name(std::string_view model, std::string_view precision, bool channels_last,
                                     int64_t batch_size) {
  return std::string(model) + "-" + std::string(precision) + "-" + (channels_last ? "channels_last" : "contiguous") +
         "-bs" + std::to_string(batch_size) + ".pt2";
}
