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

// One iteration's tokens as every rank receives them.
struct StepInput {
  const int32_t* tokenIds = nullptr;
  const int32_t* positions = nullptr;
  // Without block tables: the contiguous cache of one slot per sequence; the sequence (KV-cache
  // slot) of each token. Every row's logits come back.
  const int32_t* slots = nullptr;
  int64_t tokens = 0;

  // With block tables: the paged KV cache. The tokens are grouped by sequence: sequence s owns
  // tokens [seqStarts[s], seqStarts[s + 1]), at consecutive positions. Token t writes its key and
  // value rows at physical slot kvSlots[t] (block * kvBlockSize + offset in the block) and
  // attends over positions [0, positions[t]] of its sequence, whose blocks are
  // blockTables[s * blockTableStride ...] in position order.
  const int32_t* kvSlots = nullptr;  // [tokens]
  int64_t sequences = 0;
  const int32_t* seqStarts = nullptr;    // [sequences + 1]
  const int32_t* blockTables = nullptr;  // [sequences * blockTableStride]
  int64_t blockTableStride = 0;
  // The rows whose logits are wanted, ascending (the last token of each sampling sequence):
  // the lm_head runs on these rows only, and forward() returns [logitRowCount, vocab].
  const int32_t* logitRows = nullptr;
  int64_t logitRowCount = 0;

  // llava: [tokens, hidden], the projected image row of every image token of the step (the
  // other rows are not read); null when the step has no image.
  const float* imageEmbeds = nullptr;
  // With imageEmbeds, [tokens]: nonzero where its row replaces the token's embedding. Null:
  // every image token's row does. A batch mixes a prompt's image with other sequences' tokens,
  // and a generated image token id keeps its text embedding.
  const uint8_t* useImageRow = nullptr;

  bool paged() const { return blockTables != nullptr; }
};

// How one logit row picks its token. `uniform` is the request's own draw in [0, 1) for this
// token, so the pick depends only on the request's seed and its tokens, never on the batch.
struct RowSampling {
  float temperature = 0.0f;  // <= 0: greedy
  int32_t topK = 0;          // 0: off
  float topP = 1.0f;         // 1: off
  float minP = 0.0f;         // 0: off
  double uniform = 0.0;
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
  // One forward step and a token for every logit row, row i picked with rows[i] (greedy where
  // its temperature is <= 0). A backend that can sample on its device overrides this; the
  // default samples on the host from forward()'s logits.
  // `vocab` is the logits' row width (the model's vocab_size).
  virtual Expected<std::vector<int32_t>> forwardSample(const StepInput& in, const RowSampling* rows,
                                                       int64_t vocab);
  // Pipeline micro-batches: beginForward runs this rank's part of a step up to where the
  // logits come back from the last stage and returns, so the rank can begin the next
  // micro-batch while later stages still work on this one; finishForward completes the oldest
  // begun step (they finish in the order they began) and returns forward()'s logits. `in` must
  // stay valid until then. Without an override the whole step runs in finishForward.
  virtual Error beginForward(const StepInput& in) {
    (void)in;
    return Error::success();
  }
  virtual Expected<const float*> finishForward(const StepInput& in) { return forward(in); }
  // llava: runs this rank's part of the vision tower and projector on one image's
  // pixel_patches ([rows, channels * patch^2], cpu::patchify's layout); returns the image
  // features [rows, text hidden], the same on every rank, valid until the next call.
  virtual Expected<const float*> encodeImage(const float* patches, int64_t rows) {
    (void)patches;
    (void)rows;
    return makeError("the ", name(), " backend does not run vision towers");
  }
  // Whether encodeImage runs here (the plan has a tower and this backend has its weights).
  virtual bool encodesImages() const { return false; }
  // Bytes this rank holds for its weights after loading.
  virtual uint64_t residentWeightBytes() const = 0;
  // Blocks of the paged KV pool (of BackendOptions::kvBlockSize tokens each); 0 when the
  // backend has no paged pool.
  virtual int64_t kvBlocks() const { return 0; }
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
  // The paged KV pool, sized once the weights are loaded: tokens per block; on the CPU the pool's
  // bytes per rank, on CUDA the share of the GPU's memory that weights, activations and the pool
  // may use together.
  int64_t kvBlockSize = 16;
  uint64_t kvCacheBytes = 0;
  double gpuMemoryUtilization = 0.90;
};

// The host sampler of forwardSample: `count` rows of `logits` ([count, vocab]), row r picked
// with rows[r] and its own draw.
std::vector<int32_t> sampleLogitRows(const float* logits, int64_t count, const RowSampling* rows,
                                     int64_t vocab);

// The backend `options.kind` names; "cuda" is an error in a build without the CUDA toolkit.
Expected<std::unique_ptr<Backend>> createBackend(const LoadedPlan& plan, uint32_t rank,
                                                 Communicator& comm, const BackendOptions& options);
// True when this build has the CUDA backend.
bool haveCudaBackend();
// GPUs visible to this process (0 without the CUDA backend or without a driver).
int cudaDeviceCount();
// The free memory of every visible GPU, in bytes (empty without the CUDA backend or a driver);
// asked in a forked child, as cudaDeviceCount is, so the caller can still fork CUDA ranks.
std::vector<uint64_t> cudaFreeMemory();
// Rooflines of GPU `device` for benchmarks: device-to-device copy bandwidth in bytes/s (bytes
// read + written), read bandwidth in bytes/s (a kernel that only reads, as decode reads its
// weights; a copy's reads come out lower) and the bf16 rate of a large cuBLASLt GEMM in FLOP/s.
Expected<double> deviceCopyBandwidth(int device);
Expected<double> deviceReadBandwidth(int device);
Expected<double> deviceGemmFlops(int device);
// Brackets what an external profiler started with `--profile-from-start off` records (Nsight
// Compute, Nsight Systems), so a profile of `tpexec bench` holds the timed steps and not the
// weight fill, prefill or graph capture before them. Nothing happens without the CUDA backend or
// without a profiler attached.
void deviceProfilerRange(bool record);

// The CPU backend itself; createBackend checks rank and world before calling it.
Expected<std::unique_ptr<Backend>> createCpuBackend(const LoadedPlan& plan, uint32_t rank,
                                                    Communicator& comm,
                                                    const BackendOptions& options);

}  // namespace tpc
