#include "build_facts.h"

#include <string>  // defines _GLIBCXX_USE_CXX11_ABI

#ifndef BENCH_BUILD_TYPE
#define BENCH_BUILD_TYPE ""
#endif

Json build_facts() {
#ifdef __OPTIMIZE__
  constexpr bool kOptimized = true;
#else
  constexpr bool kOptimized = false;
#endif
#ifdef NDEBUG
  constexpr bool kNdebug = true;
#else
  constexpr bool kNdebug = false;
#endif
#ifdef __FAST_MATH__
  constexpr bool kFastMath = true;
#else
  constexpr bool kFastMath = false;
#endif
#if defined(_GLIBCXX_USE_CXX11_ABI) && _GLIBCXX_USE_CXX11_ABI
  constexpr bool kCxx11Abi = true;
#else
  constexpr bool kCxx11Abi = false;
#endif
  return Json::object({{"build_type", BENCH_BUILD_TYPE},
                       {"optimized", kOptimized},
                       {"ndebug", kNdebug},
                       {"fast_math", kFastMath},
                       {"cxx11_abi", kCxx11Abi}});
}
