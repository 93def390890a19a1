// A minimal JSON value and its writer, for the results document. C++ only: Python has its json module, and
// no JSON library reaches a build that needs no flags (the torch wheel ships none). tests/test_json.py reads
// what it writes (through json_test.cpp) back with Python's json module.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <variant>
#include <vector>

// A JSON value. Objects keep insertion order, like Python dicts.
class Json {
 public:
  using Array = std::vector<Json>;
  using Object = std::vector<std::pair<std::string, Json>>;

  Json() : value_(nullptr) {}  // null
  Json(std::nullptr_t) : value_(nullptr) {}
  Json(bool b) : value_(b) {}
  Json(int i) : value_(std::int64_t(i)) {}
  Json(std::int64_t i) : value_(i) {}
  Json(double d) : value_(d) {}
  Json(const char* s) : value_(std::string(s)) {}
  Json(std::string s) : value_(std::move(s)) {}
  Json(Array a) : value_(std::move(a)) {}
  Json(Object o) : value_(std::move(o)) {}
  // An array of numbers or strings.
  template <typename T>
  Json(const std::vector<T>& items) : value_(Array(items.begin(), items.end())) {}

  static Json object(std::initializer_list<std::pair<std::string, Json>> items) { return Json(Object(items)); }

  // Appends a key to an object (the value must be an object).
  void set(std::string key, Json value);
  // Appends every key of `other` (Python: {**a, **b}); both must be objects.
  void update(const Json& other);
  // The value of `key` in an object; throws std::out_of_range when it is missing.
  const Json& get(const std::string& key) const;
  // The text of a string value.
  const std::string& str() const { return std::get<std::string>(value_); }
  // Indented text (arrays of scalars on one line); throws std::domain_error for a non-finite double (JSON has
  // none).
  std::string dump() const;

 private:
  void dump_to(std::string& out, int indent) const;

  std::variant<std::nullptr_t, bool, std::int64_t, double, std::string, Array, Object> value_;
};
