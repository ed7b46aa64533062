// One plan step's kernels on the CUDA backend (the class is in CudaBackendImpl.h).
#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "codegen/PlanFormat.h"
#include "executor/MoeGroups.h"
#include "executor/StepAttrs.h"
#include "executor/cuda/CudaBackendImpl.h"
#include "executor/cuda/MoeGrouped.h"
#include "kernels/cuda/AttentionPrefill.h"
#include "kernels/cuda/DecodeAttention.h"
#include "kernels/cuda/Gemv.h"
#include "kernels/cuda/MoeStreaming.h"

namespace tpc {

using cuda::ElementType;

namespace {
// Eager steps up to this many tokens run the streaming MoE kernels; larger ones (prefill) group
// by expert through cuBLASLt, whose host round trip a graph cannot hold, so graph steps of any
// size stream.
constexpr int64_t kMoeStreamingMaxTokens = 64;
}  // namespace

Error CudaBackend::enqueueSteps(int64_t tokens) {
  size_t attention = 0;
  for (uint32_t i = 0; i < prog_.steps()->size(); ++i) {
    const plan::Step& s = *prog_.steps()->Get(i);
    if (tokens == 1 && oneRow_.skip[i]) continue;
    if (decodeRowsFused(tokens) && oneRow_.skipInFusedRows[i]) continue;
    if (tokens > 1 && decodeStep_ && oneRow_.skipInDecodeRows[i]) continue;
    // After the plan's select_rows only the chunk's logit rows go on (none: nothing does).
    int64_t rows = tokens;
    const int64_t logitsFrom = selectStep_ >= 0 ? selectStep_ : logitRecvStep_;
    if (logitsFrom >= 0 && i >= static_cast<uint32_t>(logitsFrom)) {
      // No logit rows: nothing to compute, but every boundary still carries its empty value,
      // so that both sides of it agree on what comes next.
      if (chunkLogits_ == 0) {
        std::string_view op = s.op()->string_view();
        if (op == "send" || op == "recv")
          if (Error e = transferStage(s, tokens, allRowsCross_ ? tokens : 0)) return e;
        continue;
      }
      rows = chunkLogits_;
      if (i == static_cast<uint32_t>(selectStep_)) {
        if (selectAliasFrom_ != UINT32_MAX) continue;  // every row: its result is its operand
        TPC_CUDA_TRY(cuda::selectRows(operandType(s, 0), operand(s, 0, tokens),
                                      logitRowsFor(tokens), rows, width(s, 0), result(s, tokens),
                                      stream_));
        continue;
      }
    }
    if (Error e = enqueue(s, i, attention, tokens, rows))
      return std::move(e).withContext(std::string(s.op()->string_view()) + ": ");
  }
  return Error::success();
}

// A linear step: the one-token paired GEMV that also writes the swiglu, the GEMV with a folded
// norm, or GemmRunner (our GEMV or cuBLASLt).
Error CudaBackend::enqueueLinear(const plan::Step& s, uint32_t index, const cuda::GemvNorm* norm,
                                 int64_t A, int64_t T) {
  const ElementType type = operandType(s, 0);
  cudaStream_t st = stream_;
  const plan::Weight& w = weightOf(s, 1);
  const void* bias = s.operands()->size() == 3 ? operand(s, 2, A) : nullptr;
  // Norms never fold into the gate/up pair (OneRowFusion), so the pair reads its operand.
  if (T == 1 && oneRow_.swigluInto.count(index)) {
    const plan::Step& swiglu = *prog_.steps()->Get(oneRow_.swigluInto.at(index));
    TPC_CUDA_TRY(cuda::gemvSwiglu(type, operand(s, 0, A), operand(s, 1, A), bias, w.shape()->Get(1),
                                  w.shape()->Get(0) / 2, result(swiglu, A), st));
    return Error::success();
  }
  if (norm) {
    TPC_CUDA_TRY(cuda::gemv(type, type, nullptr, operand(s, 1, A), bias, 1, w.shape()->Get(1),
                            w.shape()->Get(0), result(s, A), st, norm));
    return Error::success();
  }
  return gemm_->linear(type, resultType(s), operand(s, 0, A), operand(s, 1, A), bias, T,
                       w.shape()->Get(1), w.shape()->Get(0), result(s, A), st);
}

Error CudaBackend::enqueue(const plan::Step& s, uint32_t index, size_t& attention, int64_t tokens,
                           int64_t rows) {
  std::string_view op = s.op()->string_view();
  // Buffers are addressed for the chunk's `tokens` rows; the step runs on its first `rows`.
  const int64_t A = tokens, T = rows;
  const ElementType type = operandType(s, 0);
  auto eps = static_cast<float>(stepFloat(s, "eps", 1e-6));
  cudaStream_t st = stream_;
  // A norm folded into this one-token linear (skipped as a step at one token): the GEMV computes
  // it, or, where the GEMV cannot take the shape or is turned off, the norm runs here first.
  cuda::GemvNorm foldedNorm;
  const cuda::GemvNorm* norm = nullptr;
  if (op == "linear" && A == 1 && T == 1) {
    const int64_t in = weightOf(s, 1).shape()->Get(1);
    const bool gemvRuns =
        !oneRow_.swigluInto.count(index) && GemmRunner::gemvEnabled() && resultType(s) == type;
    const auto folded = oneRow_.normInto.find(index);
    if (folded != oneRow_.normInto.end()) {
      const plan::Step& ns = *prog_.steps()->Get(folded->second);
      const bool add = ns.op()->string_view() == "add_rms_norm";
      foldedNorm.x = operand(ns, 0, A);
      foldedNorm.residual = add ? operand(ns, 1, A) : nullptr;
      foldedNorm.weight = operand(ns, add ? 2 : 1, A);
      foldedNorm.eps = static_cast<float>(stepFloat(ns, "eps", 1e-6));
      foldedNorm.sum = add ? result(ns, A, 0) : nullptr;
      if (gemvRuns && cuda::gemvNormSupports(type, in, foldedNorm) &&
          cuda::gemvSupports(type, 1, in, foldedNorm.x, operand(s, 1, A)))
        norm = &foldedNorm;
      else if (Error e = enqueue(ns, folded->second, attention, tokens, rows))
        return e;
    }
  }
  if (op == "linear") return enqueueLinear(s, index, norm, A, T);
  if (op == "embedding") {
    const plan::Weight& table = weightOf(s, 1);
    const plan::WeightSlice* slice = table.slices()->Get(0);
    int64_t firstRow = slice->dim() == 0 ? slice->start() : 0;
    TPC_CUDA_TRY(cuda::embedding(computeType_, static_cast<const int32_t*>(operand(s, 0, A)), T,
                                 operand(s, 1, A), table.shape()->Get(0), firstRow,
                                 table.shape()->Get(1), result(s, A), st));
  } else if (op == "rms_norm") {
    TPC_CUDA_TRY(cuda::rmsNorm(type, operand(s, 0, A), operand(s, 1, A), T, width(s, 0), eps,
                               result(s, A), st));
  } else if (op == "add_rms_norm") {
    TPC_CUDA_TRY(cuda::addRmsNorm(type, operand(s, 0, A), operand(s, 1, A), operand(s, 2, A), T,
                                  width(s, 0), eps, result(s, A, 0), result(s, A, 1), st));
  } else if (op == "head_rms_norm") {
    int64_t d = stepInt(s, "head_dim");
    TPC_CUDA_TRY(cuda::headRmsNorm(type, operand(s, 0, A), operand(s, 1, A), T, width(s, 0) / d, d,
                                   eps, result(s, A), st));
  } else if (op == "add") {
    TPC_CUDA_TRY(
        cuda::add(type, operand(s, 0, A), operand(s, 1, A), T * width(s, 0), result(s, A), st));
  } else if (op == "rope") {
    auto [inverse, scaling] = rope_.at(index);
    int64_t d = stepInt(s, "head_dim");
    auto fused = oneRow_.fusedRopeHeads.find(index);
    const int64_t heads =
        T == 1 && fused != oneRow_.fusedRopeHeads.end() ? fused->second : width(s, 0) / d;
    TPC_CUDA_TRY(cuda::rope(type, operand(s, 0, A), static_cast<const int32_t*>(operand(s, 1, A)),
                            T, heads, d, inverse, scaling, result(s, A), st));
  } else if (op == "attention") {
    if (attention >= caches_.size()) return makeError("more attention steps than KV caches");
    cuda::KvCacheView cache = caches_[attention++];
    cache.blockTable = blockTableFor(A);
    // One token: the layer's rope may be folded in; the decode kernel rotates, any other kernel
    // gets the rope run first as its own step.
    const auto normed =
        A == 1 ? oneRow_.normedRopesInto.find(index) : oneRow_.normedRopesInto.end();
    if (normed != oneRow_.normedRopesInto.end()) {
      const OneRowFusion::NormedRopes& f = normed->second;
      const plan::Step& qNorm = *prog_.steps()->Get(f.qNorm);
      const plan::Step& kNorm = *prog_.steps()->Get(f.kNorm);
      if (cuda::decodeAttentionSupports(type, stepInt(s, "heads"), cache.kvHeads, cache.headDim)) {
        const cuda::DecodeHeadNorms norms{operand(qNorm, 1, A), operand(kNorm, 1, A),
                                          static_cast<float>(stepFloat(qNorm, "eps")),
                                          static_cast<float>(stepFloat(kNorm, "eps"))};
        const cuda::DecodeRope rope{rope_.at(f.qRope).first, rope_.at(f.qRope).second, norms};
        return enqueueAttention(s, cache, A, &rope, operand(qNorm, 0, A), operand(kNorm, 0, A));
      }
      for (uint32_t step : {f.qNorm, f.kNorm, f.qRope, f.kRope})
        if (Error e = enqueue(*prog_.steps()->Get(step), step, attention, tokens, rows)) return e;
      return enqueueAttention(s, cache, A, nullptr);
    }
    // Several decode rows that read q, k and v from the qkv rows (the split and both ropes
    // skipped, enqueueSteps); the decode kernel supports the layer (checked when loading).
    const auto throughSplit = decodeRowsFused(A) ? oneRow_.attentionReadsSplit.find(index)
                                                 : oneRow_.attentionReadsSplit.end();
    if (throughSplit != oneRow_.attentionReadsSplit.end()) {
      const plan::Step& split = *prog_.steps()->Get(throughSplit->second.split);
      const auto* qkv = static_cast<const char*>(operand(split, 0, A));
      const auto elt = static_cast<int64_t>(cuda::elementBytes(type));
      const int64_t qBytes = widths_[split.results()->Get(0)] * elt;
      const int64_t kBytes = widths_[split.results()->Get(1)] * elt;
      const uint32_t qRope = throughSplit->second.qRope;
      const cuda::DecodeRope rope{rope_.at(qRope).first, rope_.at(qRope).second, {}};
      return enqueueAttention(s, cache, A, &rope, qkv, qkv + qBytes, qkv + qBytes + kBytes,
                              width(split, 0));
    }
    // The layer's q/k rope folded in: at one token over the split's views (the fused pair's
    // twin skipped), in a step of several decode rows over the split's q and k themselves (both
    // ropes skipped, enqueueSteps). The decode kernel rotates; any other kernel gets the ropes
    // run first as their own steps.
    const bool decodeRows = A > 1 && decodeStep_;
    const std::map<uint32_t, uint32_t>& folds =
        decodeRows ? oneRow_.ropeIntoRows : oneRow_.ropeInto;
    const auto folded = A == 1 || decodeRows ? folds.find(index) : folds.end();
    if (folded == folds.end()) return enqueueAttention(s, cache, A, nullptr);
    const uint32_t qRope = folded->second, kRope = qRope + 1;
    if (cuda::decodeAttentionSupports(type, stepInt(s, "heads"), cache.kvHeads, cache.headDim) &&
        A <= cuda::kDecodeMaxTokens) {
      const cuda::DecodeRope rope{rope_.at(qRope).first, rope_.at(qRope).second, {}};
      if (A == 1) return enqueueAttention(s, cache, A, &rope);
      return enqueueAttention(s, cache, A, &rope, operand(*prog_.steps()->Get(qRope), 0, A),
                              operand(*prog_.steps()->Get(kRope), 0, A));
    }
    for (uint32_t step = qRope; step <= (A == 1 ? qRope : kRope); ++step)
      if (Error e = enqueue(*prog_.steps()->Get(step), step, attention, tokens, rows)) return e;
    return enqueueAttention(s, cache, A, nullptr);
  } else if (op == "swiglu") {
    // Several decode rows: both halves straight from the gate/up rows (the split skipped).
    const auto halves =
        decodeRowsFused(A) ? oneRow_.swigluReadsSplit.find(index) : oneRow_.swigluReadsSplit.end();
    if (halves != oneRow_.swigluReadsSplit.end()) {
      const plan::Step& split = *prog_.steps()->Get(halves->second);
      TPC_CUDA_TRY(
          cuda::swigluHalves(type, operand(split, 0, A), T, width(s, 0), result(s, A), st));
      return Error::success();
    }
    TPC_CUDA_TRY(
        cuda::swiglu(type, operand(s, 0, A), operand(s, 1, A), T * width(s, 0), result(s, A), st));
  } else if (op == "split") {
    const int64_t in = width(s, 0);
    const uint32_t parts = s.results()->size();
    if (parts <= static_cast<uint32_t>(cuda::kMaxSplitParts)) {
      // One launch for every result (a layer's q/k/v or gate/up): at a few rows each copy is
      // only a launch's latency.
      int64_t widths[cuda::kMaxSplitParts];
      void* outs[cuda::kMaxSplitParts];
      for (uint32_t r = 0; r < parts; ++r) {
        widths[r] = widths_[s.results()->Get(r)];
        outs[r] = result(s, A, r);
      }
      TPC_CUDA_TRY(cuda::splitColumns(type, operand(s, 0, A), T, in, widths, outs,
                                      static_cast<int>(parts), st));
    } else {
      int64_t offset = 0;
      for (uint32_t r = 0; r < parts; ++r) {
        const int64_t w = widths_[s.results()->Get(r)];
        TPC_CUDA_TRY(
            cuda::copyColumns(type, operand(s, 0, A), T, in, offset, w, result(s, A, r), st));
        offset += w;
      }
    }
  } else if (op == "slice") {
    TPC_CUDA_TRY(cuda::copyColumns(type, operand(s, 0, A), T, width(s, 0), stepInt(s, "start"),
                                   stepInt(s, "length"), result(s, A), st));
  } else if (op == "image_rows") {
    return enqueueImageRows(s, A, T);
  } else if (op == "moe_router") {
    const plan::Weight& gate = weightOf(s, 1);
    const int64_t experts = gate.shape()->Get(0);
    if (!cuda::moeStreamingDisabled() &&
        cuda::moeRouterStreamingSupports(type, width(s, 0), experts, operand(s, 0, A),
                                         operand(s, 1, A), workspace_.data())) {
      TPC_CUDA_TRY(cuda::moeRouterStreaming(
          type, operand(s, 0, A), operand(s, 1, A), T, width(s, 0), experts, stepInt(s, "top_k"),
          stepInt(s, "norm_topk_prob") != 0, workspace_.data(),
          static_cast<float*>(result(s, A, 0)), static_cast<int32_t*>(result(s, A, 1)), st));
      return Error::success();
    }
    TPC_CUDA_TRY(cuda::moeRouter(
        type, operand(s, 0, A), operand(s, 1, A), T, width(s, 0), gate.shape()->Get(0),
        stepInt(s, "top_k"), stepInt(s, "norm_topk_prob") != 0,
        static_cast<float*>(result(s, A, 0)), static_cast<int32_t*>(result(s, A, 1)), st));
  } else if (op == "moe_experts") {
    int64_t experts = stepInt(s, "experts"), per = stepInt(s, "params_per_expert");
    int64_t intermediate = weightOf(s, static_cast<uint32_t>(3 + per - 1)).shape()->Get(1);
    int64_t hidden = width(s, 0);
    const int64_t topK = stepInt(s, "top_k");
    const auto* routingWeights = static_cast<const float*>(operand(s, 1, A));
    const auto* chosen = static_cast<const int32_t*>(operand(s, 2, A));
    // Expert parallelism: the choices renumbered to this rank's experts; the kernels skip the
    // others' (-1), and the all-reduce after this step adds the other ranks' parts.
    if (auto local = localExperts_.find(index); local != localExperts_.end()) {
      auto* renumbered = reinterpret_cast<int32_t*>(localChoices_.data());
      TPC_CUDA_TRY(cuda::moeLocalExperts(chosen, T * topK, local->second.first, local->second.count,
                                         renumbered, st));
      chosen = renumbered;
    }
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    TPC_CUDA_TRY(cudaStreamIsCapturing(st, &capture));
    const std::vector<const void*>& host = hostExpertPointers_.at(index);
    // Decode-sized steps, and any step of a graph: the streaming kernels (no host round trip).
    const bool streaming =
        !cuda::moeStreamingDisabled() &&
        (T <= kMoeStreamingMaxTokens || capture != cudaStreamCaptureStatusNone) &&
        cuda::moeExpertsStreamingSupports(type, hidden, intermediate, experts, operand(s, 0, A),
                                          workspace_.data()) &&
        std::all_of(host.begin(), host.end(),
                    [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; });
    const void* const* devicePointers = expertPointers_.at(index);
    if (streaming) {
      TPC_CUDA_TRY(cuda::moeExpertsStreaming(
          type, operand(s, 0, A), routingWeights, chosen, T, hidden, intermediate, topK, experts,
          devicePointers, per == 3 ? devicePointers + experts : nullptr,
          devicePointers + 2 * experts, cuda::moeDirectMaxTokens(), /*accumulate=*/false,
          workspace_.data(), result(s, A), st));
      return Error::success();
    }
    // The other kernels accumulate into a zeroed result.
    TPC_CUDA_TRY(cudaMemsetAsync(result(s, A), 0,
                                 static_cast<size_t>(T * hidden) * cuda::elementBytes(type), st));
    // Many tokens: grouped by expert (GEMMs). A graph being captured cannot wait for the host.
    const MoeShape shape{T, hidden, intermediate, topK, experts, cuda::elementBytes(type)};
    if (moeRunsGrouped(T, topK, capture != cudaStreamCaptureStatusNone) &&
        moeGroupedLayout(shape)) {
      const MoeExpertPointers pointers{host.data(), per == 3 ? host.data() + experts : nullptr,
                                       host.data() + 2 * experts};
      return moeExpertsGrouped(*gemm_, type, shape, operand(s, 0, A), routingWeights, chosen,
                               pointers, workspace_.data(), workspace_.bytes(),
                               reinterpret_cast<int32_t*>(moeCountsHost_.data()), result(s, A), st,
                               [this] { return wait("MoE expert counts"); });
    }
    TPC_CUDA_TRY(
        cuda::moeExperts(type, operand(s, 0, A), routingWeights, chosen, T, hidden, intermediate,
                         topK, devicePointers, per == 3 ? devicePointers + experts : nullptr,
                         devicePointers + 2 * experts, workspace_.data(), result(s, A), st));
  } else if (op == "send" || op == "recv") {
    return transferStage(s, A, T);
  } else if (op == "all_reduce" && ipc_) {
    return ipc_->allReduceDevice(type, operand(s, 0, A), T, width(s, 0), result(s, A), st);
  } else if (op == "all_reduce_add_rms_norm" && ipc_) {
    // One kernel: peers' partial rows summed in rank order, the residual added, the row normed.
    return ipc_->allReduceAddRmsNormDevice(type, operand(s, 0, A), operand(s, 1, A),
                                           operand(s, 2, A), T, width(s, 0), eps, result(s, A, 0),
                                           result(s, A, 1), st);
  } else if (op == "all_reduce_add_rms_norm") {
    // NCCL has no fused form: reduce into the gather scratch (room for any activation), then the
    // add_rms_norm kernel the unfused plan would have run.
    if (Error e =
            nccl_->allReduceDevice(operand(s, 0, A), gather_.data(),
                                   static_cast<size_t>(T * width(s, 0)), ncclTypeOf(type), st))
      return e;
    TPC_CUDA_TRY(cuda::addRmsNorm(type, operand(s, 1, A), gather_.data(), operand(s, 2, A), T,
                                  width(s, 0), eps, result(s, A, 0), result(s, A, 1), st));
  } else if (op == "all_gather" && ipc_) {
    return ipc_->allGatherDevice(type, operand(s, 0, A), T, width(s, 0), result(s, A), st);
  } else if (op == "all_reduce") {
    return nccl_->allReduceDevice(operand(s, 0, A), result(s, A),
                                  static_cast<size_t>(T * width(s, 0)), ncclTypeOf(type), st);
  } else if (op == "all_gather") {
    const int64_t w = width(s, 0), world = plan_.world();
    const size_t elt = cuda::elementBytes(type);
    if (T == 1)  // one row: rank order is already the gathered row's layout
      return nccl_->allGatherDevice(operand(s, 0, A), result(s, A), static_cast<size_t>(w),
                                    ncclTypeOf(type), st);
    if (Error e = nccl_->allGatherDevice(operand(s, 0, A), gather_.data(),
                                         static_cast<size_t>(T * w), ncclTypeOf(type), st))
      return e;
    for (int64_t r = 0; r < world; ++r)
      TPC_CUDA_TRY(cudaMemcpy2DAsync(
          static_cast<char*>(result(s, A)) + r * w * elt, static_cast<size_t>(world * w) * elt,
          gather_.data() + r * T * w * elt, static_cast<size_t>(w) * elt,
          static_cast<size_t>(w) * elt, static_cast<size_t>(T), cudaMemcpyDeviceToDevice, st));
  } else {
    return makeError("the CUDA backend has no kernel for ", op);
  }
  return Error::success();
}

Error CudaBackend::enqueueAttention(const plan::Step& s, const cuda::KvCacheView& cache,
                                    int64_t tokens, const cuda::DecodeRope* rope, const void* qIn,
                                    const void* kIn, const void* vIn, int64_t qkvStride) {
  const ElementType type = operandType(s, 0);
  const int64_t heads = stepInt(s, "heads");
  const auto scale = static_cast<float>(stepFloat(s, "scale"));
  const bool decodeKernel =
      cuda::decodeAttentionSupports(type, heads, cache.kvHeads, cache.headDim);
  const bool prefillKernel = cuda::prefillAttentionSupports(type, cache.headDim);
  const auto* q = static_cast<const char*>(qIn ? qIn : operand(s, 0, tokens));
  const auto* k = static_cast<const char*>(kIn ? kIn : operand(s, 1, tokens));
  const auto* v = static_cast<const char*>(vIn ? vIn : operand(s, 2, tokens));
  auto* out = static_cast<char*>(result(s, tokens));
  const auto* positions = static_cast<const int32_t*>(operand(s, 3, tokens));
  const int32_t* tableRows = tableRowsFor(tokens);
  const auto elt = static_cast<int64_t>(cuda::elementBytes(type));
  const int64_t qRow = width(s, 0) * elt, kRow = width(s, 1) * elt, vRow = width(s, 2) * elt;
  const int64_t outRow = widths_[s.results()->Get(0)] * elt;
  // Tokens [first, first + count) of the chunk: one sequence's run of a prompt, or decode tokens
  // of distinct sequences.
  const auto launch = [&](int64_t first, int64_t count, bool prompt, int64_t startPosition,
                          int32_t row) -> Error {
    const char* qi = q + first * qRow;
    const char* ki = k + first * kRow;
    const char* vi = v + first * vRow;
    char* oi = out + first * outRow;
    if (rope && (prompt || !decodeKernel || count > cuda::kDecodeMaxTokens))
      return makeError("a folded rope reached an attention kernel that cannot rotate");
    if (qkvStride && (prompt || !decodeKernel || count > cuda::kDecodeMaxTokens || first != 0))
      return makeError("q, k and v in the qkv rows reached a kernel that cannot read them so");
    if (prompt && prefillKernel) {
      TPC_CUDA_TRY(cuda::prefillAttention(type, qi, ki, vi, count, heads, startPosition, row, scale,
                                          cache, oi, stream_));
    } else if (!prompt && decodeKernel && count <= cuda::kDecodeMaxTokens) {
      TPC_CUDA_TRY(cuda::decodeAttention(type, qi, ki, vi, positions + first, tableRows + first,
                                         count, heads, scale, cache, decodeWorkspace_.data(), oi,
                                         stream_, rope, qkvStride));
    } else {
      TPC_CUDA_TRY(cuda::attention(type, qi, ki, vi, positions + first, tableRows + first, count,
                                   heads, scale, cache, workspace_.data(), oi, stream_));
    }
    return Error::success();
  };
  // A decode step is one launch over every row, a graph bucket's padding included, so its
  // launches do not depend on the step's sequences.
  if (decodeStep_) return launch(0, tokens, false, 0, 0);
  for (auto [begin, end] : launchGroups(pieces_)) {
    const AttentionPiece& p = pieces_[begin];
    const int64_t first = p.first - chunkFirst_;
    if (Error e = p.count > 1 ? launch(first, p.count, true, p.startPosition, p.row)
                              : launch(first, static_cast<int64_t>(end - begin), false, 0, 0))
      return e;
  }
  return Error::success();
}

}  // namespace tpc
