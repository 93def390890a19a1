// bench_train's command line, built from the one table of flags (kFlags, generated from bench/vocab.py). Twin of
// bench/flags.py.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string_view>

#include "vocab.h"  // Args: one field per flag

// A bad command line: one line on stderr, exit 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// `text` as an integer in [low, high], else UsageError "<name> must be an integer in [low, high], got '<text>'".
int64_t parse_int(std::string_view name, std::string_view text, int64_t low, int64_t high);
// `text` as a number in (low, high] (a float's lower limit is excluded: --lr > 0), else UsageError.
double parse_float(std::string_view name, std::string_view text, int64_t low, int64_t high);

// Accepts `--flag value` and `--flag=value`; prints kHelp and exits 0 for -h or --help.
Args parse_args(int argc, char** argv);
