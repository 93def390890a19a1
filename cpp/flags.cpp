#include "flags.h"

#include <torch/torch.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <regex>
#include <set>
#include <variant>

namespace {

// Plain ASCII decimal text only (no "1_000", no " 5", no "nan"), the same grammar as Python's.
const std::regex kInteger("[+-]?[0-9]+");
const std::regex kNumber(R"([+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)");

// `text` as a T, if it follows `grammar` and a T holds it (not beyond int64, not beyond a double's range).
template <typename T>
std::optional<T> read_number(std::string_view text, const std::regex& grammar) {
  if (!std::regex_match(text.begin(), text.end(), grammar)) return std::nullopt;
  const auto digits = text.substr(text[0] == '+');  // from_chars reads no leading '+'
  T value{};
  if (std::from_chars(digits.data(), digits.data() + digits.size(), value).ec != std::errc()) return std::nullopt;
  return value;
}

}  // namespace

int64_t parse_int(std::string_view name, std::string_view text, int64_t low, int64_t high) {
  const auto value = read_number<int64_t>(text, kInteger);
  if (!value || *value < low || *value > high) {
    throw UsageError(c10::str(name, " must be an integer in [", low, ", ", high, "], got '", text, "'"));
  }
  return *value;
}

double parse_float(std::string_view name, std::string_view text, int64_t low, int64_t high) {
  const auto value = read_number<double>(text, kNumber);
  if (!value || !(double(low) < *value && *value <= double(high))) {
    throw UsageError(c10::str(name, " must be a number in (", low, ", ", high, "], got '", text, "'"));
  }
  return *value;
}

namespace {

std::string braced(std::span<const std::string_view> choices) {
  std::string text = "{";
  for (const auto& c : choices) text += (text.size() > 1 ? "," : "") + std::string(c);
  return text + "}";
}

std::vector<std::string> split_commas(std::string_view text) {
  std::vector<std::string> items;
  for (size_t start = 0;;) {
    const size_t comma = text.find(',', start);
    items.emplace_back(text.substr(start, comma - start));
    if (comma == std::string_view::npos) return items;
    start = comma + 1;
  }
}

std::string parse_choice(std::string_view name, std::string_view text, std::span<const std::string_view> choices) {
  if (std::find(choices.begin(), choices.end(), text) == choices.end()) {
    throw UsageError(c10::str(name, " must be one of ", braced(choices), ", got '", text, "'"));
  }
  return std::string(text);
}

std::vector<int64_t> parse_ints(std::string_view name, std::string_view text, int64_t low, int64_t high,
                                bool allow_empty) {
  std::vector<int64_t> values;
  if (allow_empty && text.empty()) return values;
  try {
    for (const auto& item : split_commas(text)) values.push_back(parse_int(name, item, low, high));
  } catch (const UsageError&) {
    throw UsageError(c10::str(name, " must be comma-separated integers in [", low, ", ", high, "], got '", text, "'"));
  }
  return values;
}

std::vector<std::string> parse_names(std::string_view name, std::string_view text,
                                     std::span<const std::string_view> choices) {
  auto names = split_commas(text);
  const std::set<std::string> distinct(names.begin(), names.end());
  const bool known = std::all_of(names.begin(), names.end(), [&](const std::string& n) {
    return std::find(choices.begin(), choices.end(), n) != choices.end();
  });
  if (!known || distinct.size() != names.size()) {
    throw UsageError(
        c10::str(name, " must be distinct comma-separated names from ", braced(choices), ", got '", text, "'"));
  }
  return names;
}

// Stores `text`, checked as the table says, in the flag's field (Python: parse_value; parse_args stores it).
void set_value(Args& args, const Flag& flag, std::string_view text) {
  std::visit(
      [&](auto member) {
        using T = std::remove_reference_t<decltype(args.*member)>;
        auto& out = args.*member;
        if constexpr (std::is_same_v<T, int64_t>) out = parse_int(flag.name, text, flag.low, flag.high);
        if constexpr (std::is_same_v<T, double>) out = parse_float(flag.name, text, flag.low, flag.high);
        if constexpr (std::is_same_v<T, bool>) out = true;
        if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
          out = parse_ints(flag.name, text, flag.low, flag.high, /*allow_empty=*/flag.default_text.empty());
        }
        if constexpr (std::is_same_v<T, std::vector<std::string>>) out = parse_names(flag.name, text, flag.choices);
        if constexpr (std::is_same_v<T, std::string>) {
          out = flag.kind == FlagKind::kChoice ? parse_choice(flag.name, text, flag.choices) : std::string(text);
        }
      },
      flag.field);
}

// What no single flag can say: the aoti path's package folder, the traces' folder, and CUDA on this machine.
void check_combinations(const Args& args) {
  const auto& paths = args.inference_paths;
  if (std::find(paths.begin(), paths.end(), "aoti") != paths.end() && args.aoti_dir.empty()) {
    throw UsageError(
        "--inference-paths aoti needs --aoti-dir DIR (the folder `python -m suite.experiments.aoti package` prints)");
  }
  if (args.trace_steps > 0 && args.trace_dir.empty()) {
    throw UsageError("--trace-steps needs --trace-dir DIR (where the Chrome traces go)");
  }
  if (args.device == "cuda" && !torch::cuda::is_available()) {
    throw UsageError("--device cuda was requested but CUDA is not available");
  }
}

// The flag `arg` names (before any "=value"), or UsageError.
const Flag& find_flag(std::string_view arg) {
  const auto name = arg.substr(0, arg.find('='));
  const auto it = std::find_if(kFlags.begin(), kFlags.end(), [&](const Flag& f) { return f.name == name; });
  if (it == kFlags.end()) throw UsageError(c10::str("unknown flag '", arg, "' (--help lists them)"));
  return *it;
}

}  // namespace

Args parse_args(int argc, char** argv) {
  Args args;
  for (const auto& flag : kFlags) {
    if (flag.kind != FlagKind::kSwitch) set_value(args, flag, flag.default_text);
  }
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fwrite(kHelp.data(), 1, kHelp.size(), stdout);
      std::exit(0);
    }
    const Flag& flag = find_flag(arg);
    const size_t eq = arg.find('=');
    std::optional<std::string_view> value;
    if (eq != std::string_view::npos) value = arg.substr(eq + 1);
    if (flag.kind == FlagKind::kSwitch && value)
      throw UsageError(c10::str(flag.name, " takes no value, got '", arg, "'"));
    if (flag.kind != FlagKind::kSwitch && !value) {
      if (i + 1 >= argc) throw UsageError(c10::str(flag.name, " needs a value"));
      value = argv[++i];
    }
    set_value(args, flag, value.value_or(""));
  }
  check_combinations(args);
  return args;
}
