// json_test: the JSON writer of the results (cpp/json.cpp) on awkward values, for tests/test_json.py, which
// reads the document back with Python's json module and compares it with the values written here.
//   json_test            writes the document to stdout
//   json_test nan|inf    tries to write a non-finite number instead: refused, the reason on stderr, exit 1
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>

#include "json.h"

namespace {

Json awkward_document() {
  const Json strings = Json::object({
      {"ascii", "plain"},
      {"unicode", "\u00b5s, \u2713, \U0001F600, \u03a9"},
      {"controls", std::string("\x00\x01\x07\x08\t\n\x0b\x0c\r\x1b\x1f\x7f", 12)},
      {"quotes", "say \"hi\""},
      {"backslashes", "C:\\path\\n"},
      {"slash", "a/b"},
      {"empty", ""},
      {"key with \"quotes\" and \\", "value"},
  });
  const Json numbers = Json::object({
      {"tenth", 0.1},
      {"third", 1.0 / 3.0},
      {"tiny", 1e-300},
      {"denormal", std::numeric_limits<double>::denorm_min()},
      {"huge", std::numeric_limits<double>::max()},
      {"whole_float", 2.0},
      {"negative_zero", -0.0},
      {"two_pow_53_plus_1", (int64_t(1) << 53) + 1},
      {"int64_min", std::numeric_limits<int64_t>::min()},
      {"int64_max", std::numeric_limits<int64_t>::max()},
  });
  return Json::object({
      {"strings", strings},
      {"numbers", numbers},
      {"true", true},
      {"false", false},
      {"null", nullptr},
      {"empty_array", Json::Array{}},
      {"empty_object", Json::object({})},
      {"nested",
       Json::object({{"list", Json::Array{1, 2.5, "x", Json::Array{}, Json::object({})}},
                     {"objects", Json::Array{Json::object({{"a", Json::Array{Json::object({{"b", nullptr}})}}})}}})},
      {"numbers_flat", std::vector<double>{0.5, -1.25, 1e21}},
  });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(awkward_document().dump().c_str(), stdout);
    return 0;
  }
  const std::string what = argv[1];
  const double bad = what == "nan" ? std::nan("") : std::numeric_limits<double>::infinity();
  try {
    std::fputs(Json::object({{"ok", 1.0}, {"bad", Json::Array{bad}}}).dump().c_str(), stdout);
  } catch (const std::domain_error& e) {
    std::fprintf(stderr, "json_test: refused: %s\n", e.what());
    return 1;
  }
  return 0;  // written: the test fails
}
