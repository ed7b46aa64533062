#!/usr/bin/env bash
# The engine on a GPU machine, from the repository root after scripts/gpu/bundle.sh (copy
# gpu-bundle/ there with the repository): the CUDA tests of paged steps and of ranks sharing
# one GPU (the one-node IPC communicator, under an MPS daemon this script starts and stops),
# then the engine's benchmarks beside today's fixed-batch path and transformers' own continuous
# batching. Logs and one JSON line per benchmark go to $OUT (or ./gpu-logs).
# The ipc part: graph-against-eager agreement with ranks sharing the GPU, the collectives'
# latency inside a graph (tpc_ipc_bench), the Llama-3-8B shape at world 2 on one GPU beside
# world 1, and the fault test (a rank killed or stopped mid-decode ends every rank within 5 s and
# leaves no process on the GPU).
# ipc-tests: only the tests of ranks sharing a GPU (a part of tests).
#   scripts/gpu/engine-suite.sh [tests|ipc-tests|ipc|decode|offline|serve|all]
set -uo pipefail
what=${1:-all}
root=$(cd "$(dirname "$0")/../.." && pwd)
bundle="$root/gpu-bundle"
"$root/scripts/gpu/unpack.sh"
keep=${OUT:-$root/gpu-logs}
mkdir -p "$keep"
log="$keep/engine-suite.log"
echo "== engine-suite $what $(date -u +%FT%TZ)" >> "$log"
toolkit=$(dirname "$(dirname "$(command -v nvcc)")")
export LD_LIBRARY_PATH="$bundle/lib:$toolkit/lib64:${LD_LIBRARY_PATH:-}"
export TPC_BIN_DIR="$bundle/bin" TPC_TEST_DATA_DIR="$root/tests/data" NCCL_NVLS_ENABLE=0
bin="$bundle/bin"
plans="$bundle/plans"
status=0
say() { echo "$*" | tee -a "$log"; }

gtest() {  # name seconds binary filter
  local name=$1 seconds=$2 binary=$3 filter=$4
  timeout "$seconds" "$bin/$binary" --gtest_filter="$filter" >> "$log" 2>&1
  local rc=$?
  say "$name: rc=$rc $(grep -cE '^\[       OK' "$log") ok so far, $(grep -E '^\[  FAILED  \] [A-Za-z]' "$log" | sort -u | wc -l) failed so far"
  [ $rc -eq 0 ] || status=1
}

bench() {  # name seconds plan args...
  local name=$1 seconds=$2 plan=$3; shift 3
  local start=$SECONDS
  timeout "$seconds" "$bin/tpexec" bench "$plans/$plan" --synthetic-weights --json "$@" \
    > "$keep/$name.json" 2>> "$log" || { status=1; say "$name: failed"; }
  say "$name ($((SECONDS - start)) s): $(cat "$keep/$name.json" 2>/dev/null)"
}


# Ranks sharing one GPU need MPS for their contexts to run at the same time.
mps_start() {
  mps=$(mktemp -d)
  export CUDA_MPS_PIPE_DIRECTORY="$mps/pipe" CUDA_MPS_LOG_DIRECTORY="$mps/log"
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  nvidia-cuda-mps-control -d && say "mps: started"
}
mps_stop() {
  echo quit | nvidia-cuda-mps-control
  # The daemon exits once its server has; wait for that (bounded) before the next part.
  for _ in $(seq 50); do pgrep -f nvidia-cuda-mps-server > /dev/null || break; sleep 0.1; done
  unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
}

# The fault test (scripts/gpu/ipc-fault.sh): rank 1 of a world-2 engine run of the 1B shape gets
# SIG mid-decode; every rank must be gone within 5 s, leaving no process on the GPU.
fault() {  # signal
  local line
  line=$("$root/scripts/gpu/ipc-fault.sh" "$bin" "$plans/llama3.2-1b.w2.fb" "$1" "$keep/fault-$1.txt") || status=1
  say "$line"
}

if [ "$what" = tests ] || [ "$what" = all ]; then
  gtest kernels 240 tpc_kernels_cuda_tests '*'
  gtest paged-steps 120 tpc_executor_tests 'CudaPaged*'
  gtest golden 240 tpc_tools_tests 'TpexecCudaGolden*:-*Ipc*:*SharingAGpu*'
fi

if [ "$what" = tests ] || [ "$what" = ipc-tests ] || [ "$what" = all ]; then
  [ "$what" = ipc-tests ] && gtest ipc-kernels 120 tpc_kernels_cuda_tests 'CudaIpc*'
  mps_start
  # TPC_IPC_VERIFY=1: a collective that reads a row before its peer staged it (or while the peer
  # rewrites it) fails the run by name instead of giving wrong numbers.
  TPC_IPC_VERIFY=1 gtest ipc-executor 120 tpc_executor_tests 'Ipc*'
  # IPC_GOLDEN=0 leaves out the golden models (18 cases, minutes) for a quick look.
  [ "${IPC_GOLDEN:-1}" = 0 ] || TPC_IPC_VERIFY=1 gtest ipc-golden 300 tpc_tools_tests '*SharingAGpu*:*Ipc*'
  mps_stop
fi

if [ "$what" = ipc ] || [ "$what" = all ]; then
  mps_start
  # IPC_MODELS narrows the golden models compared (default: the script's list).
  echo "world 4:" >> "$keep/ipc-determinism.txt"
  TPC_IPC_VERIFY=1 "$root/scripts/gpu/ipc-determinism.sh" "$bin" "$keep/ipc-determinism.txt" 4 ${IPC_MODELS:-}
  # The same under MPS at world 1 (no IPC) and world 2: which of MPS and the ranks it takes.
  for w in 1 2; do
    echo "world $w:" >> "$keep/ipc-determinism.txt"
    "$root/scripts/gpu/ipc-determinism.sh" "$bin" "$keep/ipc-determinism.txt" $w mistral-gqa qwen2-bias-tied
  done
  say "ipc-determinism: $(wc -l < "$keep/ipc-determinism.txt") lines"
  timeout 120 "$bin/tpc_ipc_bench" --worlds 2,4,8 --sizes-kb 8,16,32,64,256,1024,4096 \
    > "$keep/ipc-bench.txt" 2>> "$log" || { status=1; say "ipc-bench: failed"; }
  cat "$keep/ipc-bench.txt" >> "$log"
  # Batch-1 decode of the Llama-3-8B shape: world 2 sharing the GPU against world 1, and world 2
  # without its collectives (the overhead's breakdown).
  mkdir -p "$keep/breakdown"
  "$root/scripts/gpu/ipc-breakdown.sh" "$bin" "$plans/llama3-8b.b256.w1.fb" \
    "$plans/llama3-8b.b256.w2.fb" "$keep/breakdown" 180 >> "$log" 2>&1 || { status=1; say "breakdown: failed"; }
  say "$(tail -n 2 "$log")"
  # Each fault run gets a fresh daemon: on the H200, the client after a run whose ranks had been
  # killed mid-kernel was refused ("CUDA-capable device(s) is/are busy or unavailable").
  for sig in KILL STOP; do
    mps_stop
    mps_start
    fault $sig
  done
  mps_stop
  # With every run over and the daemon gone, no process may hold GPU memory.
  left=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader)
  if [ -n "$left" ]; then status=1; say "gpu-after-ipc: processes still on the GPU: $left"
  else say "gpu-after-ipc: no process holds GPU memory"; fi
fi

if [ "$what" = decode ] || [ "$what" = all ]; then
  # Batch 1: today's fixed-batch path, then the same decode through the engine.
  bench fixed-b1 120 llama3-8b.w1.fb --batch 1 --prompt-len 512 --gen 256
  bench engine-b1 120 llama3-8b.b256.w1.fb --requests 1 --input-len 512 --output-len 256 --concurrency 1
  # 64 sequences at about 600 positions.
  bench fixed-b64 120 llama3-8b.b256.w1.fb --batch 64 --prompt-len 600 --gen 64
  bench engine-b64 150 llama3-8b.b256.w1.fb --requests 64 --input-len 600 --output-len 64 --concurrency 64
  # The Qwen3-30B-A3B shape: one prompt of 2,016 tokens (one prefill chunk, MoE grouped by
  # expert), then batch-1 decode.
  bench fixed-qwen3moe-b1 150 qwen3-30b-a3b.b256.w1.fb --batch 1 --prompt-len 2016 --gen 16
fi

if [ "$what" = offline ] || [ "$what" = all ]; then
  bench engine-offline-8b 240 llama3-8b.b256.w1.fb --requests 1000 --input-len 1024 --output-len 128 --concurrency 256
  # The same with a larger token budget per iteration: fewer iterations, so the decode rows'
  # KV reads are paid less often against the prompt tokens' GEMMs.
  bench engine-offline-8b-t8192 240 llama3-8b.b256.w1.fb --requests 1000 --input-len 1024 --output-len 128 --concurrency 256 --max-batched-tokens 8192
  bench engine-offline-qwen3moe 150 qwen3-30b-a3b.b256.w1.fb --requests 128 --input-len 1024 --output-len 128 --concurrency 64
  bench mixtral-b1 150 mixtral-8x7b.w1.fb --batch 1 --prompt-len 512 --gen 64
  start=$SECONDS
  timeout 300 python3 "$root/bench/hf_continuous_batching.py" "$plans/llama3-8b.config.json" \
    --requests 256 --input-len 1024 --output-len 128 > "$keep/hf-offline-8b.json" 2>> "$log" \
    || { status=1; say "hf-offline-8b: failed"; }
  say "hf-offline-8b ($((SECONDS - start)) s): $(cat "$keep/hf-offline-8b.json" 2>/dev/null)"
fi
if [ "$what" = serve ] || [ "$what" = all ]; then
  # The HTTP server over the engine, loaded by bench/serve-bench's generator (streamed token-id
  # prompts): concurrency 1 for inter-token latency against the engine's decode step (engine-b1),
  # then 64 and 256 open requests of 1024 in / 128 out.
  "$bin/tpexec" serve "$plans/llama3-8b.b256.w1.fb" --synthetic-weights --port 0 \
    --max-seqs 256 > "$keep/serve.out" 2>> "$log" &
  server=$!
  port=0
  for _ in $(seq 600); do
    port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$keep/serve.out")
    [ -n "$port" ] && python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/health', timeout=2)" 2> /dev/null && break
    kill -0 $server 2> /dev/null || break
    sleep 0.5
  done
  say "serve: port ${port:-none}"
  for shape in "1 16" "64 256" "256 512"; do
    set -- $shape
    start=$SECONDS
    timeout 300 "$bin/tpexec" serve-bench --port "${port:-1}" --json --max-concurrency "$1" \
      --num-prompts "$2" --input-len 1024 --output-len 128 > "$keep/serve-c$1.json" 2>> "$log" \
      || { status=1; say "serve-c$1: failed"; }
    say "serve-c$1 ($((SECONDS - start)) s): $(cat "$keep/serve-c$1.json" 2>/dev/null)"
  done
  kill -TERM $server 2> /dev/null
  wait $server 2> /dev/null
fi
exit "$status"
