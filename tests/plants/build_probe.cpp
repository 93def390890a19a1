// Prints cpp/build_facts.cpp's facts as this probe was compiled: tests/test_process.py compiles it with the flags of
// a build that differs from the trainer's (unoptimized, assertions on, fast-math, the other C++ ABI).
#include <cstdio>

#include "build_facts.h"

int main() { std::puts(build_facts().dump().c_str()); }
