// The gloo backend of a distributed CPU run: the one translation unit that includes ProcessGroupGloo.hpp, which
// needs gloo's headers. torch's wheels do not ship them (their libtorch_cpu has gloo inside); CMakeLists.txt finds a
// user's (Debian/Ubuntu's libgloo-dev, or -DBENCH_GLOO_INCLUDE_DIR) and builds this file only then (BENCH_WITH_GLOO).
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/Utils.hpp>

#include <cstdlib>

#include "dist.h"

// As torch.distributed's gloo backend: one device per interface in GLOO_SOCKET_IFNAME, else the machine's hostname
// (falling back to loopback), two threads per device, the run's timeout.
c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                    std::chrono::milliseconds timeout) {
  using c10d::ProcessGroupGloo;
  auto options = ProcessGroupGloo::Options::create(timeout);
  const bool lazy = c10d::getDefaultGlooLazyInit();
  const char* interfaces = std::getenv("GLOO_SOCKET_IFNAME");
  if (interfaces != nullptr && std::string(interfaces).size() > 1) {
    for (const auto& name : c10d::split(',', interfaces)) {
      options->devices.push_back(ProcessGroupGloo::createDeviceForInterface(name, lazy));
    }
  } else {
    options->devices.push_back(ProcessGroupGloo::createDefaultDevice(lazy));
  }
  options->threads = int(options->devices.size()) * 2;
  return c10::make_intrusive<ProcessGroupGloo>(store, rank, size, options);
}
