// CUDA, cuBLAS and NCCL status codes as tpc Errors. Every call into those libraries goes through
// one of these, so a failure names the call that failed instead of surfacing later as garbage.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include "ir/Error.h"

namespace tpc::cudacheck {

inline Error check(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return Error::success();
  return makeError(what, ": ", cudaGetErrorString(status));
}
inline Error check(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return Error::success();
  return makeError(what, ": cuBLAS status ", static_cast<int>(status));
}
inline Error check(ncclResult_t status, const char* what) {
  if (status == ncclSuccess || status == ncclInProgress) return Error::success();
  return makeError(what, ": ", ncclGetErrorString(status));
}

}  // namespace tpc::cudacheck

// Returns the error from the enclosing function when `call` fails.
#define TPC_CUDA_TRY(call)                                                                       \
  do {                                                                                           \
    if (::tpc::Error tpcCudaError = ::tpc::cudacheck::check((call), #call)) return tpcCudaError; \
  } while (0)
