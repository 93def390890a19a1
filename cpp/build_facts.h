// How bench_train itself was built (the process section's `build`; Python: bench/process.py build_facts). Kept
// apart from process.cpp and free of torch, so that a test can compile it with other flags (tests/test_process.py).
#pragma once

#include "json.h"

// build_type (CMake's, from BENCH_BUILD_TYPE), optimized (__OPTIMIZE__), ndebug (NDEBUG), fast_math
// (__FAST_MATH__: -ffast-math or -Ofast) and cxx11_abi (_GLIBCXX_USE_CXX11_ABI, which must be torch's).
Json build_facts();
