// Collectives between the ranks of one node that read each other's device memory directly (CUDA
// IPC, or plain pointers when the "ranks" share one process, as in the tests). Block b owns rows
// b, b + blocks, ...: it copies them into this rank's staging slots, tells every peer so through
// flag b in the peer's memory, waits for every peer's flag b, then reads those rows of every
// rank's slots and sums them in rank order, in f32, so every rank gets the same bits (one-shot:
// suited to decode rows).
//
// A call's epoch comes from a counter in device memory that the call itself advances, so a CUDA
// Graph that captured the calls replays them with fresh epochs and no host work. Staging alternates
// between two halves by epoch parity: a peer that signalled epoch e has finished epoch e - 1 (its
// calls run in stream order), so the half of epoch e + 1 is free once epoch e is complete. Waits
// give up after `timeoutNs` (recording the peer in `error`) or when `abort` is set; the host turns
// either into an Error after the stream finishes (see executor/cuda/IpcCommunicator).
//
// The invariants, for one-shot call e of rank r (block b owns the same rows on every rank):
// - r writes only its own staging half e & 1, and only rows of its block b, then sets flag
//   (b, r) to e in every peer's flag words; flags only grow.
// - r reads a peer's rows of block b only after that peer's flag (b) reached e: the peer staged
//   them at e (a peer is at most one call ahead: it cannot finish call e + 1 without r's flags).
// - r rewrites half e & 1 at call e + 2 only after its call e + 1 completed, i.e. after every
//   peer's block signalled e + 1, which each did after its call e had completed (stream order):
//   nobody still reads r's rows of call e. Graph replays and eager calls share the counter, so
//   this holds across replays; two-shot takes two consecutive epochs and keeps the same rules.
// - All ranks make the same calls in the same order with the same rows (the plan is one
//   program), so their epochs agree.
// IpcPeers::verify checks the first two at run time (a tag after every staged row).

//
// Two-shot (for inputs too long for every rank to read all of): reduce-scatter then all-gather
// over the same staging and flags, one call taking two epochs (see ipcTwoShotAllReduce).
//
// The kernels wait for each other across streams, so they must be loaded before the first one
// runs: with lazy loading (CUDA's default), the first launch of a kernel may wait for the work
// already running in the context, a peer's kernel that waits for this one (ipcLoadKernels).
//
// Host-compilable, like CudaKernels.h.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/CudaKernels.h"

namespace tpc::cuda {

constexpr int kIpcMaxRanks = 8;
// Flag slots per rank: one per block of a call.
constexpr int64_t kIpcMaxRows = 256;
// Blocks of one call summed over the ranks, which may all share one GPU. Every block spins until
// its peers' blocks arrive, and while it spins it holds its SM's resources: a peer's kernel that
// needs a whole SM (a GEMM's shared memory) cannot start a block there, and if the spinning
// blocks sit on every SM the peer never reaches the collective. So a call's blocks stay few and
// each loops over rows. (With one block per row, 8 ranks x 256 blocks made no progress on one
// H200, and two engine ranks of the Llama-3-8B shape stopped making progress; with this cap they
// decode. CudaIpcProtocol.PeerKernelNeedingWholeSmsStillReachesTheCollective is the case.)
constexpr int64_t kIpcMaxBlocksAllRanks = 64;
inline int64_t ipcMaxBlocks(int world) {
  const int64_t share = kIpcMaxBlocksAllRanks / (world > 0 ? world : 1);
  return share < 1 ? 1 : share < kIpcMaxRows ? share : kIpcMaxRows;
}

struct IpcPeers {
  // Every rank's staging area (two halves of `halfBytes`) and flag words ([kIpcMaxRows] slots of
  // kIpcMaxRanks epochs: flags[r][b * kIpcMaxRanks + p] is the epoch at which rank p's block b
  // reached rank r).
  void* staging[kIpcMaxRanks] = {};
  uint32_t* flags[kIpcMaxRanks] = {};
  uint32_t* epoch = nullptr;        // this rank's call counter and block-done counter, 2 words
  uint32_t* error = nullptr;        // mapped host word: 0, or 1 + the rank a wait gave up on
  const uint32_t* abort = nullptr;  // mapped host word: non-zero ends every wait at once
  int rank = 0, world = 1;
  int64_t halfBytes = 0;
  uint64_t timeoutNs = 5'000'000'000ull;
  // Checks the protocol on every one-shot call (TPC_IPC_VERIFY=1 in IpcCommunicator): each staged
  // row carries the epoch that wrote it, claimed before the row is written; a reader finding
  // another epoch there before it reads (a row read before its writer staged it) or after (a row
  // rewritten while it was read) records kIpcStaleRow or kIpcRewrittenRow + the rank in `error`.
  int verify = 0;
};

// `error` words past 1 + rank (a wait that gave up): a protocol violation that verify found.
constexpr uint32_t kIpcStaleRow = 0x100, kIpcRewrittenRow = 0x200;

// Bytes of one rank's flag words.
constexpr size_t ipcFlagBytes() { return kIpcMaxRows * kIpcMaxRanks * sizeof(uint32_t); }
// Rows of `rowBytes` that one call may carry with `halfBytes` of staging (each staged row is
// followed by its epoch tag).
int64_t ipcRowsPerCall(int64_t halfBytes, int64_t rowBytes);

// out[t] = sum over ranks of in[t] (rows × width). `out` may alias `in`.
cudaError_t ipcAllReduce(ElementType type, const IpcPeers& peers, const void* in, int64_t rows,
                         int64_t width, void* out, cudaStream_t stream);
// sum = residual + allReduce(partial), rounded to `type` at each of the two steps as the unfused
// all_reduce and add_rms_norm would; out = rmsNorm(sum) * weight, as cuda::addRmsNorm.
cudaError_t ipcAllReduceAddRmsNorm(ElementType type, const IpcPeers& peers, const void* partial,
                                   const void* residual, const void* weight, int64_t rows,
                                   int64_t width, float eps, void* sum, void* out,
                                   cudaStream_t stream);
// out[t] = [in_0[t], in_1[t], ...]: rows of world × width, in rank order.
cudaError_t ipcAllGather(ElementType type, const IpcPeers& peers, const void* in, int64_t rows,
                         int64_t width, void* out, cudaStream_t stream);

// out = sum over ranks of in (count elements, at most ipcTwoShotMaxCount), reduce-scatter then
// all-gather: bitwise the one-shot result. `out` may alias `in`. Advances the epoch by two.
cudaError_t ipcTwoShotAllReduce(ElementType type, const IpcPeers& peers, const void* in,
                                int64_t count, void* out, cudaStream_t stream);
int64_t ipcTwoShotMaxCount(int64_t halfBytes, int64_t elementBytes);

// Loads every IPC kernel into the current context now (see above).
cudaError_t ipcLoadKernels();

}  // namespace tpc::cuda
