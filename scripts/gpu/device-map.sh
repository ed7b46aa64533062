#!/usr/bin/env bash
# Batch-1 decode of the Llama-3-8B shape (synthetic weights, a 32-token prompt) three ways, on the
# GPU machine after scripts/gpu/bundle.sh: all on the GPU (world 1, CUDA Graphs and eager), as the
# device map `--device-map auto --device-memory cuda:0=8GiB,cpu=64GiB` places it (the GPU stage
# on the CUDA backend, the CPU stage on the CPU backend; `tpc dump` of the plan gives the split),
# and all on the CPU. One JSON line each, as `tpexec --json` prints it.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bundle="$root/gpu-bundle"
"$root/scripts/gpu/unpack.sh"
toolkit=$(dirname "$(dirname "$(command -v nvcc)")")
export LD_LIBRARY_PATH="$bundle/lib:$toolkit/lib64:${LD_LIBRARY_PATH:-}" NCCL_NVLS_ENABLE=0
prompt=$(python3 -c 'print(",".join(str(7*i+11) for i in range(32)))')
run() {  # name seconds plan args...
  local name=$1 limit=$2 plan=$3; shift 3
  echo -n "$name: "
  # A CPU stage's first step waits for its weights: the rank timeout covers the load.
  timeout "$limit" "$bundle/bin/tpexec" "$bundle/plans/$plan" "$@" --synthetic-weights \
    --prompt-ids "$prompt" --ignore-eos --json --rank-timeout-ms 60000 || echo "failed"
}
run gpu 30 llama3-8b.w1.fb --backend cuda --max-new-tokens 64
run gpu-eager 30 llama3-8b.w1.fb --backend cuda --eager --max-new-tokens 64
run device-map 90 llama3-8b.map.fb --max-new-tokens 12
run cpu 90 llama3-8b.w1.fb --backend cpu --max-new-tokens 5
