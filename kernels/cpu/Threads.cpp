#include "kernels/cpu/Threads.h"

#include <cblas.h>

#include <cstdlib>
#include <thread>

namespace tpc::cpu {

// TPC_KERNEL_THREADS, when set, wins over the caller's share of the cores: several "nodes"
// simulated on one host would otherwise each claim every core.
void setKernelThreads(int threads) {
  if (const char* pinned = std::getenv("TPC_KERNEL_THREADS")) {
    const int n = std::atoi(pinned);
    if (n > 0) threads = n;
  }
  openblas_set_num_threads(threads < 1 ? 1 : threads);
}
void shareKernelThreads(int ranks) {
  const unsigned cores = std::thread::hardware_concurrency();
  setKernelThreads(
      ranks > 0 && cores > static_cast<unsigned>(ranks) ? static_cast<int>(cores) / ranks : 1);
}
int kernelThreads() { return openblas_get_num_threads(); }

}  // namespace tpc::cpu
