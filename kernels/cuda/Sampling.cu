// Greedy and stochastic token choice, one block per row of logits, agreeing with cpu::sample for
// the same uniform draw. The CPU twin walks its survivors in one of two orders: token id order
// for plain temperature sampling, highest logit first (ties by token id) once top-k or top-p is
// on. Here:
//   - plain temperature: masses summed per thread over contiguous id segments, one block scan,
//     and the thread whose segment holds the draw walks it (three passes over the row);
//   - top-k/top-p: the k-th largest logit by radix select (4 passes of 8 bits over an ordered key),
//     then, when at most kCapacity tokens survive (top-k up to ~2000), they are sorted in shared
//     memory and one thread runs the CPU twin's loops on them exactly (same sums, same order);
//   - top-p alone over a large vocabulary: the same on the kCapacity highest logits when the
//     nucleus closes within them (the usual case; ~8 passes);
//   - otherwise: bisection over the ordered key space for the nucleus edge and for the draw, ~35
//     passes each: correct but slow (hundreds of us).
#include <cmath>

#include "kernels/cuda/ArgmaxWide.h"
#include "kernels/cuda/CudaKernels.h"
#include "kernels/cuda/DeviceMath.cuh"
#include "kernels/cuda/SampleRows.h"

namespace tpc::cuda {
namespace {

using detail::kFullMask;
using detail::kWarpSize;

constexpr int kThreads = 1024;
constexpr int kCapacity = 2048;

// Float to unsigned key with the same order; -0 is folded into +0 first (they compare equal).
__device__ __forceinline__ uint32_t orderedKey(float value) {
  const uint32_t bits = __float_as_uint(value + 0.0f);
  return (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
}
__device__ __forceinline__ float keyValue(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) ? key & 0x7fffffffu : ~key);
}

struct Shared {
  double scanDouble[kWarpSize + 1];
  long long scanCount[kWarpSize + 1];
  float reduceFloat[kWarpSize];
  double reduceDouble[kWarpSize];
  int histogram[256];
  int selectedBin, found, kept;
  long long answer;
  // Survivors as (key << 32 | ~token): sorting the 64-bit values descending gives highest logit
  // first, ties by lower token id.
  unsigned long long candidates[kCapacity];
  double probs[kCapacity];
};

struct Row {
  const float* logits;
  int64_t vocab;
  float temperature;
  __device__ float scaled(int64_t i) const { return __fdiv_rn(logits[i], temperature); }
  __device__ uint32_t key(int64_t i) const { return orderedKey(scaled(i)); }
};

// Who survives the filters so far: keys above cutKey, and at cutKey the ids up to cutId.
struct Cut {
  uint32_t key = 0;
  long long id = INT64_MAX;
  __device__ bool keeps(uint32_t k, int64_t i) const { return k > key || (k == key && i <= id); }
};

template <typename V>
__device__ V blockExclusiveScan(V v, V* scratch, V* total) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  V inclusive = v;
#pragma unroll
  for (int offset = 1; offset < kWarpSize; offset *= 2) {
    const V other = __shfl_up_sync(kFullMask, inclusive, offset);
    if (lane >= offset) inclusive += other;
  }
  if (lane == kWarpSize - 1) scratch[warp] = inclusive;
  __syncthreads();
  if (warp == 0) {
    const V own = lane < warps ? scratch[lane] : V(0);
    V running = own;
#pragma unroll
    for (int offset = 1; offset < kWarpSize; offset *= 2) {
      const V other = __shfl_up_sync(kFullMask, running, offset);
      if (lane >= offset) running += other;
    }
    scratch[lane] = running - own;
    if (lane == kWarpSize - 1) scratch[kWarpSize] = running;
  }
  // The lane's exclusive prefix taken from its neighbour (not inclusive - v, which would round).
  V exclusive = __shfl_up_sync(kFullMask, inclusive, 1);
  if (lane == 0) exclusive = V(0);
  __syncthreads();
  const V result = scratch[warp] + exclusive;
  *total = scratch[kWarpSize];
  __syncthreads();
  return result;
}

// The first index in id order at which the running sum of weight(i) exceeds target; -1 when the
// sum never does. Each thread owns a contiguous segment, so only one block scan is needed.
template <typename V, typename Weight>
__device__ long long firstCrossingInIdOrder(int64_t vocab, V target, Weight weight, V* scanScratch,
                                            Shared& s) {
  const int64_t segment = (vocab + blockDim.x - 1) / blockDim.x;
  const int64_t begin = detail::minI64(threadIdx.x * segment, vocab);
  const int64_t end = detail::minI64(begin + segment, vocab);
  V sum = 0;
  for (int64_t i = begin; i < end; ++i) sum += weight(i);
  V total;
  const V base = blockExclusiveScan(sum, scanScratch, &total);
  if (threadIdx.x == 0) {
    s.found = blockDim.x;
    s.answer = -1;
  }
  __syncthreads();
  if (base + sum > target) atomicMin(&s.found, static_cast<int>(threadIdx.x));
  __syncthreads();
  if (static_cast<int>(threadIdx.x) == s.found) {
    V running = base;
    long long answer = end - 1;  // only reached when rounding differs between the two sums
    for (int64_t i = begin; i < end; ++i) {
      running += weight(i);
      if (running > target) {
        answer = i;
        break;
      }
    }
    s.answer = answer;
  }
  __syncthreads();
  const long long answer = s.answer;
  __syncthreads();
  return answer;
}

__device__ float rowMax(const Row& row, Shared& s) {
  float maximum = -INFINITY;
  for (int64_t i = threadIdx.x; i < row.vocab; i += blockDim.x)
    maximum = fmaxf(maximum, row.scaled(i));
  return detail::blockMax(maximum, s.reduceFloat);
}

// Σ expf(l - maximum) over survivors with key >= minKey (f32 terms, f64 sum).
__device__ double massFrom(const Row& row, float maximum, const Cut& cut, uint32_t minKey,
                           Shared& s) {
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < row.vocab; i += blockDim.x) {
    const float l = row.scaled(i);
    const uint32_t k = orderedKey(l);
    if (k >= minKey && cut.keeps(k, i)) sum += static_cast<double>(expf(l - maximum));
  }
  return detail::blockSum(sum, s.reduceDouble);
}

__device__ long long countKept(const Row& row, const Cut& cut, Shared& s) {
  long long count = 0;
  for (int64_t i = threadIdx.x; i < row.vocab; i += blockDim.x)
    if (cut.keeps(row.key(i), i)) ++count;
  return detail::blockSum(count, s.scanCount);
}

// The key of the k-th largest scaled logit (k >= 1): radix select, most significant byte first.
__device__ uint32_t kthLargestKey(const Row& row, int64_t k, Shared& s) {
  uint32_t prefix = 0, mask = 0;
  long long remaining = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x) s.histogram[b] = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < row.vocab; i += blockDim.x) {
      const uint32_t key = row.key(i);
      if ((key & mask) == prefix) atomicAdd(&s.histogram[(key >> shift) & 255u], 1);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      long long above = 0;
      int bin = 0;
      for (int b = 255; b >= 0; --b) {
        if (above + s.histogram[b] >= remaining) {
          bin = b;
          break;
        }
        above += s.histogram[b];
      }
      s.selectedBin = bin;
      s.answer = remaining - above;
    }
    __syncthreads();
    prefix |= static_cast<uint32_t>(s.selectedBin) << shift;
    mask |= 255u << shift;
    remaining = s.answer;
    __syncthreads();
  }
  return prefix;
}

// The survivor at which the highest-first walk's running mass first reaches target (inclusive:
// >= target, top-p's rule) or exceeds it (strict: the draw). Returns its token; *massThrough gets
// the walk's mass up to and including it.
__device__ long long crossingInKeyOrder(const Row& row, float maximum, const Cut& cut,
                                        uint32_t maxKey, double target, bool strict,
                                        double* massThrough, Shared& s) {
  const auto reaches = [&](double mass) { return strict ? mass > target : mass >= target; };
  uint32_t lo = cut.key, hi = maxKey;
  // The largest key whose mass from it upwards reaches the target; lo when none does (rounding):
  // then the walk ends on the last survivor.
  while (lo < hi) {
    // In 64 bits: hi - lo + 1 overflows 32 when the range is the whole key space.
    const auto mid =
        static_cast<uint32_t>(lo + (static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo) + 1) / 2);
    if (reaches(massFrom(row, maximum, cut, mid, s)))
      lo = mid;
    else
      hi = mid - 1;
  }
  const uint32_t key = lo;
  const double above = key == 0xffffffffu ? 0.0 : massFrom(row, maximum, cut, key + 1, s);
  // Tied survivors at `key` all have the same mass; the n-th of them (in id order) crosses.
  const double each = static_cast<double>(expf(keyValue(key) - maximum));
  long long ties = 0;
  for (int64_t i = threadIdx.x; i < row.vocab; i += blockDim.x)
    if (row.key(i) == key && cut.keeps(key, i)) ++ties;
  ties = detail::blockSum(ties, s.scanCount);
  // Clamped in double before converting, so a huge quotient (or a zero mass) stays defined.
  double needed = each > 0.0 ? (target - above) / each : 0.0;
  needed = strict ? floor(needed) : ceil(needed) - 1.0;
  needed = fmin(needed, static_cast<double>(ties - 1));
  long long n = static_cast<long long>(needed);
  n = n < 0 ? 0 : n;
  *massThrough = above + static_cast<double>(n + 1) * each;
  const auto isTie = [&](int64_t i) -> long long {
    return row.key(i) == key && cut.keeps(key, i) ? 1 : 0;
  };
  return firstCrossingInIdOrder<long long>(row.vocab, n, isTie, s.scanCount, s);
}

// Sorts s.candidates[0:size) descending (size a power of two, padded with zeros).
__device__ void bitonicSortDescending(unsigned long long* values, int size) {
  for (int width = 2; width <= size; width *= 2) {
    for (int stride = width / 2; stride > 0; stride /= 2) {
      for (int i = threadIdx.x; i < size; i += blockDim.x) {
        const int partner = i ^ stride;
        if (partner > i) {
          const bool descending = (i & width) == 0;
          const unsigned long long a = values[i], b = values[partner];
          if (descending ? a < b : a > b) {
            values[i] = b;
            values[partner] = a;
          }
        }
      }
      __syncthreads();
    }
  }
}

// The CPU twin's loops over its sorted survivors, run by one thread so the sums match bit for bit.
// `vocabMass` > 0: the survivors are only the top of a top-p-only row whose whole mass is
// vocabMass; returns -1 when the nucleus does not close within them.
__device__ long long walkSorted(const Shared& s, int kept, float topP, double uniform,
                                double vocabMass) {
  double total = 0.0;
  for (int i = 0; i < kept; ++i) total += s.probs[i];
  if (topP < 1.0f) {
    const double whole = vocabMass > 0.0 ? vocabMass : total;
    double cumulative = 0.0;
    int nucleus = 0;
    bool closed = false;
    while (nucleus < kept) {
      cumulative += s.probs[nucleus++] / whole;
      if (cumulative >= topP) {
        closed = true;
        break;
      }
    }
    if (vocabMass > 0.0 && !closed) return -1;
    kept = nucleus > 1 ? nucleus : 1;
    total = 0.0;
    for (int i = 0; i < kept; ++i) total += s.probs[i];
  }
  double target = uniform * total;
  const auto token = [&](int i) {
    return static_cast<long long>(0xffffffffu - (s.candidates[i] & 0xffffffffu));
  };
  for (int i = 0; i < kept - 1; ++i) {
    target -= s.probs[i];
    if (target < 0.0) return token(i);
  }
  return token(kept - 1);
}

// Gathers the `kept` (<= kCapacity) survivors of `cut` into s.candidates, highest first (ties by
// token id), and their probabilities as the CPU twin computes them: f64 exp of the f32
// difference from the maximum.
__device__ void sortSurvivors(const Row& row, const Cut& cut, int kept, float maximum, Shared& s) {
  if (threadIdx.x == 0) s.kept = 0;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < row.vocab; i += blockDim.x) {
    const uint32_t key = row.key(i);
    if (cut.keeps(key, i)) {
      const int slot = atomicAdd(&s.kept, 1);
      s.candidates[slot] =
          (static_cast<unsigned long long>(key) << 32) | (0xffffffffu - static_cast<uint32_t>(i));
    }
  }
  __syncthreads();
  int size = 1;
  while (size < kept) size *= 2;
  for (int i = kept + static_cast<int>(threadIdx.x); i < size; i += blockDim.x) s.candidates[i] = 0;
  __syncthreads();
  bitonicSortDescending(s.candidates, size);
  for (int i = threadIdx.x; i < kept; i += blockDim.x) {
    const float l = keyValue(static_cast<uint32_t>(s.candidates[i] >> 32));
    s.probs[i] = exp(static_cast<double>(l - maximum));
  }
  __syncthreads();
}

// One row per block. With `perRow`, each row's parameters and draw come from it, and rows whose
// temperature is not positive are left to the argmax already written to `out`.
__global__ void __launch_bounds__(kThreads)
    sampleKernel(const float* logits, int64_t vocab, float temperature, int64_t topK, float topP,
                 const double* uniforms, const SamplingRow* perRow, int32_t* out) {
  __shared__ Shared s;
  const int64_t r = blockIdx.x;
  if (perRow) {
    const SamplingRow p = perRow[r];
    if (!(p.temperature > 0.0f)) return;  // uniform across the block: no barrier is skipped
    temperature = p.temperature;
    topK = p.topK;
    topP = p.topP;
  }
  const Row row{logits + r * vocab, vocab, temperature};
  const double uniform = perRow ? perRow[r].uniform : uniforms[r];
  const float maximum = rowMax(row, s);
  const bool topKOn = topK > 0 && topK < vocab;
  const bool topPOn = topP < 1.0f;

  if (!topKOn && !topPOn) {
    // Plain temperature: the CPU twin walks all tokens in id order.
    const Cut all;
    const double total = massFrom(row, maximum, all, 0, s);
    const auto mass = [&](int64_t i) { return static_cast<double>(expf(row.scaled(i) - maximum)); };
    const long long token =
        firstCrossingInIdOrder<double>(vocab, uniform * total, mass, s.scanDouble, s);
    if (threadIdx.x == 0) out[r] = static_cast<int32_t>(token < 0 ? vocab - 1 : token);
    return;
  }

  Cut cut;
  if (topKOn) cut.key = kthLargestKey(row, topK, s);
  const long long kept = topKOn ? countKept(row, cut, s) : vocab;

  if (kept <= kCapacity) {
    sortSurvivors(row, cut, static_cast<int>(kept), maximum, s);
    if (threadIdx.x == 0)
      out[r] = static_cast<int32_t>(walkSorted(s, static_cast<int>(kept), topP, uniform, 0.0));
    return;
  }

  if (!topKOn) {
    // Top-p alone over a large vocabulary: the nucleus usually lies within the kCapacity highest
    // logits. Try those first (sorted exactly as above, the whole row's mass from one more pass);
    // fall through to the bisection when ties at the edge overflow the capacity or the nucleus
    // does not close within them.
    Cut top;
    top.key = kthLargestKey(row, kCapacity, s);
    const long long candidates = countKept(row, top, s);
    if (candidates <= kCapacity) {
      const double vocabMass = massFrom(row, maximum, Cut{}, 0, s);
      sortSurvivors(row, top, static_cast<int>(candidates), maximum, s);
      if (threadIdx.x == 0)
        s.answer = walkSorted(s, static_cast<int>(candidates), topP, uniform, vocabMass);
      __syncthreads();
      const long long token = s.answer;
      __syncthreads();  // s.answer is scratch for the bisection below
      if (token >= 0) {
        if (threadIdx.x == 0) out[r] = static_cast<int32_t>(token);
        return;
      }
    }
  }

  // Many survivors: bisection over the ordered keys, highest first.
  const uint32_t maxKey = orderedKey(maximum);
  double total = massFrom(row, maximum, cut, 0, s);
  if (topPOn) {
    double nucleusMass = 0.0;  // unused: recomputed below
    const long long edge = crossingInKeyOrder(
        row, maximum, cut, maxKey, static_cast<double>(topP) * total, false, &nucleusMass, s);
    cut.key = row.key(edge);
    cut.id = edge;
    // The nucleus mass again, summed exactly as the bisection below sums it (nucleusMass groups
    // the terms differently), so a draw below 1 always lands inside.
    total = massFrom(row, maximum, cut, 0, s);
  }
  double drawnMass = 0.0;
  const long long token =
      crossingInKeyOrder(row, maximum, cut, maxKey, uniform * total, true, &drawnMass, s);
  if (threadIdx.x == 0) out[r] = static_cast<int32_t>(token);
}

__global__ void __launch_bounds__(kThreads)
    argmaxKernel(const float* logits, int64_t vocab, int32_t* out) {
  __shared__ float bestValues[kWarpSize];
  __shared__ long long bestIndices[kWarpSize];
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  // Per thread: the first visited element, then strictly larger ones (ascending visits keep the
  // lowest index on ties, as cpu::argmax). INT64_MAX marks a thread that saw nothing.
  float best = -INFINITY;
  long long bestIndex = INT64_MAX;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x)
    if (bestIndex == INT64_MAX || row[i] > best) {
      best = row[i];
      bestIndex = i;
    }
  const auto better = [](float v, long long i, float bv, long long bi) {
    return i != INT64_MAX && (bi == INT64_MAX || v > bv || (v == bv && i < bi));
  };
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    const float v = __shfl_xor_sync(kFullMask, best, offset);
    const long long i = __shfl_xor_sync(kFullMask, bestIndex, offset);
    if (better(v, i, best, bestIndex)) {
      best = v;
      bestIndex = i;
    }
  }
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  if (lane == 0) {
    bestValues[warp] = best;
    bestIndices[warp] = bestIndex;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < static_cast<int>(blockDim.x / kWarpSize); ++w)
      if (better(bestValues[w], bestIndices[w], best, bestIndex)) {
        best = bestValues[w];
        bestIndex = bestIndices[w];
      }
    out[blockIdx.x] = static_cast<int32_t>(bestIndex == INT64_MAX ? 0 : bestIndex);
  }
}

}  // namespace

cudaError_t argmax(const float* logits, int64_t rows, int64_t vocab, int32_t* out,
                   cudaStream_t stream) {
  if (vocab <= 0) return cudaErrorInvalidValue;
  if (rows <= 0) return cudaGetLastError();
  // A few rows of a wide vocabulary (decode): spread each row over many blocks.
  if (argmaxWideSupports(rows, vocab)) return argmaxWide(logits, rows, vocab, out, stream);
  argmaxKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(logits, vocab, out);
  return cudaGetLastError();
}

size_t sampleWorkspaceBytes(int64_t rows, int64_t vocab) { return 0; }

cudaError_t sample(const float* logits, int64_t rows, int64_t vocab, float temperature,
                   int64_t topK, float topP, const double* uniforms, void* workspace, int32_t* out,
                   cudaStream_t stream) {
  if (temperature <= 0.0f) return argmax(logits, rows, vocab, out, stream);
  if (vocab <= 0 || vocab > INT32_MAX) return cudaErrorInvalidValue;
  if (rows <= 0) return cudaGetLastError();
  sampleKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
      logits, vocab, temperature, topK, topP, uniforms, nullptr, out);
  return cudaGetLastError();
}

cudaError_t sampleRows(const float* logits, int64_t rows, int64_t vocab, const SamplingRow* params,
                       int32_t* out, cudaStream_t stream) {
  if (vocab <= 0 || vocab > INT32_MAX) return cudaErrorInvalidValue;
  if (rows <= 0) return cudaGetLastError();
  const cudaError_t status = argmax(logits, rows, vocab, out, stream);
  if (status != cudaSuccess) return status;
  sampleKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(logits, vocab, 0.0f, 0, 1.0f,
                                                                     nullptr, params, out);
  return cudaGetLastError();
}

}  // namespace tpc::cuda
