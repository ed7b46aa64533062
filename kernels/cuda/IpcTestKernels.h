// Kernels that the IPC collectives' tests (tests/kernels_cuda) run beside them: a delay that skews
// one rank against the others, and blocks that each take a whole SM, as a peer's GEMM does.
// A rank's collective must finish however its peers are delayed, and a peer whose kernel needs
// whole SMs must still reach its collective while this rank's blocks spin (see kIpcMaxBlocks in
// kernels/cuda/IpcAllReduce.h). Host-compilable, like CudaKernels.h.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace tpc::cuda {

// One block that spins for `ns` nanoseconds.
cudaError_t ipcTestDelay(uint64_t ns, cudaStream_t stream);
// `blocks` blocks, each holding the most shared memory a block may have (so no other block fits
// beside it on its SM), each spinning for `ns` nanoseconds.
cudaError_t ipcTestWholeSmBlocks(int64_t blocks, uint64_t ns, cudaStream_t stream);
// Loads both now: a lazy load at first launch would wait for the ranks' spinning kernels.
cudaError_t ipcTestLoadKernels();

}  // namespace tpc::cuda
