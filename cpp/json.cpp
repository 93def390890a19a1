#include "json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace {

void append_string(std::string& out, const std::string& s) {
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
          out += buf;
        } else {
          out += c;  // UTF-8 passes through unchanged
        }
    }
  }
  out += '"';
}

void append_double(std::string& out, double d) {
  if (!std::isfinite(d)) throw std::domain_error("a non-finite number in the results");
  // Shortest text that reads back to the same double (what Python's repr writes).
  char buf[32];
  auto end = std::to_chars(buf, buf + sizeof buf, d).ptr;
  std::string text(buf, end);
  // Keep it a float for readers that check types: 2 -> 2.0.
  if (text.find_first_of(".eE") == std::string::npos) text += ".0";
  out += text;
}

void newline(std::string& out, int indent) {
  out += '\n';
  out.append(std::size_t(indent) * 2, ' ');
}

}  // namespace

void Json::set(std::string key, Json value) { std::get<Object>(value_).emplace_back(std::move(key), std::move(value)); }

void Json::update(const Json& other) {
  for (const auto& [key, value] : std::get<Object>(other.value_)) set(key, value);
}

const Json& Json::get(const std::string& key) const {
  for (const auto& [k, v] : std::get<Object>(value_)) {
    if (k == key) return v;
  }
  throw std::out_of_range("JSON object has no key " + key);
}

std::string Json::dump() const {
  std::string out;
  dump_to(out, 0);
  out += '\n';
  return out;
}

void Json::dump_to(std::string& out, int indent) const {
  if (std::holds_alternative<std::nullptr_t>(value_)) {
    out += "null";
  } else if (auto b = std::get_if<bool>(&value_)) {
    out += *b ? "true" : "false";
  } else if (auto i = std::get_if<std::int64_t>(&value_)) {
    out += std::to_string(*i);
  } else if (auto d = std::get_if<double>(&value_)) {
    append_double(out, *d);
  } else if (auto s = std::get_if<std::string>(&value_)) {
    append_string(out, *s);
  } else if (auto a = std::get_if<Array>(&value_)) {
    // Arrays of scalars stay on one line (sample lists would be hundreds of lines otherwise).
    bool flat = std::none_of(a->begin(), a->end(), [](const Json& v) {
      return std::holds_alternative<Array>(v.value_) || std::holds_alternative<Object>(v.value_);
    });
    out += '[';
    for (std::size_t k = 0; k < a->size(); ++k) {
      if (k > 0) out += flat ? ", " : ",";
      if (!flat) newline(out, indent + 1);
      (*a)[k].dump_to(out, indent + 1);
    }
    if (!flat && !a->empty()) newline(out, indent);
    out += ']';
  } else {
    const auto& o = std::get<Object>(value_);
    out += '{';
    for (std::size_t k = 0; k < o.size(); ++k) {
      if (k > 0) out += ',';
      newline(out, indent + 1);
      append_string(out, o[k].first);
      out += ": ";
      o[k].second.dump_to(out, indent + 1);
    }
    if (!o.empty()) newline(out, indent);
    out += '}';
  }
}
