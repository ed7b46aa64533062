#include "kernels/cpu/Threads.h"

#include <cblas.h>

namespace tpc::cpu {

void setKernelThreads(int threads) { openblas_set_num_threads(threads < 1 ? 1 : threads); }
int kernelThreads() { return openblas_get_num_threads(); }

}  // namespace tpc::cpu
