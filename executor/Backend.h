// What runs a rank's program: the CPU backend here (the numerical truth), the CUDA backend
// later. The generation loop drives any backend through this interface.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "codegen/PlanReader.h"
#include "executor/comm/Communicator.h"
#include "ir/Error.h"

namespace tpc {

struct StepInput {
  const int32_t* tokenIds = nullptr;
  const int32_t* positions = nullptr;
  const int32_t* slots = nullptr;  // the sequence (KV-cache slot) of each token
  int64_t tokens = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // One forward step; returns this rank's copy of the logits, [tokens, vocab_size] floats,
  // valid until the next call.
  virtual Expected<const float*> forward(const StepInput& in) = 0;
  // One forward step and the greedy token (argmax of the logits) of every row. A backend that
  // can pick on its device returns only the ids, saving the logits' trip to the host.
  virtual Expected<std::vector<int32_t>> forwardArgmax(const StepInput& in) = 0;
  // Bytes this rank holds for its weights after loading.
  virtual uint64_t residentWeightBytes() const = 0;
};

struct BackendOptions {
  std::string kind = "cpu";  // cpu or cuda
  int device = -1;           // cuda: the GPU to use; -1 means the rank's index on its node
  std::string modelDir;      // empty: the plan's model_dir
  // Random weights made on the device instead of the checkpoint: benchmarks of shapes that have
  // no checkpoint file (the plan's fingerprint is not checked).
  bool syntheticWeights = false;
  bool eager = false;  // cuda: run every step eagerly, never from a captured CUDA Graph
  // Called after each weight is loaded: loading a large model must not look like a hang.
  std::function<void()> onProgress;
  // Empty: weights come from the checkpoint. Otherwise called once per weight of the rank's
  // program, in plan order, with the weight's index; returns its elements as f32 laid out as
  // loadWeightsF32 would (rows of the local shape, padding included).
  std::function<Expected<std::vector<float>>(uint32_t weight)> weightSource;
};

// The backend `options.kind` names; "cuda" is an error in a build without the CUDA toolkit.
Expected<std::unique_ptr<Backend>> createBackend(const LoadedPlan& plan, uint32_t rank,
                                                 Communicator& comm, const BackendOptions& options);
// True when this build has the CUDA backend.
bool haveCudaBackend();
// GPUs visible to this process (0 without the CUDA backend or without a driver).
int cudaDeviceCount();
// Rooflines of GPU `device` for benchmarks: device-to-device copy bandwidth in bytes/s (bytes
// read + written) and the bf16 rate of a large cuBLASLt GEMM in FLOP/s.
Expected<double> deviceCopyBandwidth(int device);
Expected<double> deviceGemmFlops(int device);

// The CPU backend itself; createBackend checks rank and world before calling it.
Expected<std::unique_ptr<Backend>> createCpuBackend(const LoadedPlan& plan, uint32_t rank,
                                                    Communicator& comm,
                                                    const BackendOptions& options);

}  // namespace tpc
