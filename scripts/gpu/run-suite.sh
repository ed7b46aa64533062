#!/usr/bin/env bash
# The GPU suite, run on the GPU machine from the repository root after scripts/gpu/bundle.sh
# (gpu-bundle/ copied there beside the repository): the CUDA kernel tests against their CPU twins, the golden models on the
# CUDA backend, then the benchmarks side by side with the PyTorch reference. Full logs go to
# $OUT/suite-logs.txt (or ./gpu-logs); a short table comes last and in $OUT/summary.txt.
#   scripts/gpu/run-suite.sh [tests|bench|all]
set -uo pipefail
what=${1:-all}
root=$(cd "$(dirname "$0")/../.." && pwd)
bundle="$root/gpu-bundle"
"$root/scripts/gpu/unpack.sh"
# Logs are gathered into two files at the end: the device tool brings back only a few files.
logs=$(mktemp -d)
keep=${OUT:-$root/gpu-logs}
mkdir -p "$keep"
toolkit=$(dirname "$(dirname "$(command -v nvcc)")")
export LD_LIBRARY_PATH="$bundle/lib:$toolkit/lib64:${LD_LIBRARY_PATH:-}"
export TPC_BIN_DIR="$bundle/bin" TPC_TEST_DATA_DIR="$root/tests/data" NCCL_NVLS_ENABLE=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$logs/gpu.txt"
table=()
status=0

if [ "$what" != bench ]; then
  timeout 240 "$bundle/bin/tpc_kernels_cuda_tests" > "$logs/kernels.log" 2>&1; rc=$?
  table+=("kernel tests (CUDA vs CPU twin): $(grep -E '^\[  (PASSED|FAILED)' "$logs/kernels.log" | tr '\n' ' ') rc=$rc")
  [ $rc -eq 0 ] || status=1
  timeout 120 "$bundle/bin/tpc_executor_tests" --gtest_filter='CudaPaged*' > "$logs/paged.log" 2>&1; rc=$?
  table+=("CUDA paged steps vs the CPU backend: $(grep -E '^\[  (PASSED|FAILED)' "$logs/paged.log" | tr '\n' ' ') rc=$rc")
  [ $rc -eq 0 ] || status=1
  # About 220 s on the H200: F32 and Bf16 12 s each, graph replay 47, ranks over IPC 104,
  # expert parallel 37.
  timeout 400 "$bundle/bin/tpc_tools_tests" --gtest_filter='TpexecCudaGolden*' > "$logs/golden.log" 2>&1; rc=$?
  table+=("golden models on CUDA: $(grep -E '^\[  (PASSED|FAILED)' "$logs/golden.log" | tr '\n' ' ') rc=$rc")
  [ $rc -eq 0 ] || status=1
  timeout 120 "$bundle/bin/tpc_tools_tests" --gtest_filter='TpexecCudaLlavaGolden*' > "$logs/llava.log" 2>&1; rc=$?
  table+=("llava golden models on CUDA: $(grep -E '^\[  (PASSED|FAILED)' "$logs/llava.log" | tr '\n' ' ') rc=$rc")
  [ $rc -eq 0 ] || status=1
fi

if [ "$what" != tests ]; then
  bench() {  # name plan args...
    local name=$1 plan=$2; shift 2
    timeout 90 "$bundle/bin/tpexec" bench "$bundle/plans/$plan" --synthetic-weights --json "$@" \
      > "$logs/bench-$name.json" 2> "$logs/bench-$name.err" || { status=1; cat "$logs/bench-$name.err"; }
    python3 - "$logs/bench-$name.json" "$name" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception:
    print(f"{sys.argv[2]}: failed"); sys.exit()
print(f"{sys.argv[2]}: decode {r['decode_ms_per_step']:.3f} ms/step, {r['achieved_gb_per_s']:.0f} GB/s = "
      f"{100*r['fraction_of_bandwidth_ceiling']:.1f}% of {r['bandwidth_ceiling_gb_per_s']:.0f} GB/s (read "
      f"{r['read_gb_per_s']:.0f}, copy {r['copy_gb_per_s']:.0f}); prefill "
      f"{r['prefill_tokens_per_s']:.0f} tok/s {r['prefill_tflops']:.0f} TFLOP/s = "
      f"{100*r['prefill_fraction_of_gemm_ceiling']:.0f}% of {r['gemm_ceiling_tflops']:.0f}")
PY
  }
  torchref() {  # name config args...
    local name=$1 config=$2; shift 2
    # torch.compile takes about 80 s on the Llama-3-8B shape before the step is captured.
    timeout 240 python3 "$root/bench/torch_decode.py" "$bundle/plans/$config" "$@" > "$logs/torch-$name.json" \
      2> "$logs/torch-$name.err" || { status=1; tail -5 "$logs/torch-$name.err"; }
    cat "$logs/torch-$name.json"
  }
  table+=("$(bench 8b-b1 llama3-8b.w1.fb --batch 1 --prompt-len 512 --gen 256)")
  table+=("$(bench 8b-b1-ctx3.6k llama3-8b.w1.fb --batch 1 --prompt-len 3584 --gen 256)")
  table+=("$(bench 8b-b8 llama3-8b.w1.fb --batch 8 --prompt-len 512 --gen 128)")
  table+=("$(bench 8b-prefill2048 llama3-8b.w1.fb --batch 1 --prompt-len 2048 --gen 16)")
  table+=("$(bench 1b-b1 llama3.2-1b.w1.fb --batch 1 --prompt-len 512 --gen 256)")
  # The one-token GEMV's variants at the decode shapes, against the read ceiling of the same run.
  timeout 120 "$bundle/bin/tpc_gemv_bench" > "$logs/gemv.txt" 2>&1 || status=1
  table+=("gemv variants (tpc_gemv_bench): $(grep -E '^(read ceiling|best:)' "$logs/gemv.txt" | tr '\n' ' ')")
  # Linears of 1 to 64 tokens: cuBLASLt (first and best algorithm) against our GEMV.
  timeout 150 "$bundle/bin/tpc_linear_bench" --tokens 1,2,4,8,16,64 > "$logs/linear.txt" 2>&1 || status=1
  table+=("linears of few tokens (tpc_linear_bench): $(grep -cE 'GEMV$' "$logs/linear.txt") of $(grep -cE '(GEMV|cuBLASLt)$' "$logs/linear.txt") shape/token rows fastest through our GEMV")
  # LLaVA-1.5-7B: one image (a JPEG resized to 336 px) through the tower, its 576 tokens in the
  # prompt, then decode.
  bench llava-7b-image llava-1.5-7b.w1.fb --batch 1 --prompt-len 640 --gen 128 \
    --image "$root/tests/data/images/wide-57x41.jpg" --model-dir "$bundle/plans/llava-1.5-7b" > /dev/null
  table+=("$(python3 - "$logs/bench-llava-7b-image.json" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception:
    print("llava-7b-image: failed"); sys.exit()
print(f"llava-7b-image: image encode {r['image_encode_ms']:.2f} ms ({r['image_tokens']} tokens), "
      f"prefill {r['prefill_ms']:.2f} ms, decode {r['decode_ms_per_step']:.3f} ms/step")
PY
)")
  table+=("torch 8b-b1: $(torchref 8b-b1 llama3-8b.config.json --batch 1 --prompt-len 512 --gen 256)")
  table+=("torch.compile 8b-b1: $(torchref 8b-b1-compile llama3-8b.config.json --batch 1 --prompt-len 512 --gen 256 --compile)")
  table+=("torch 8b-b8: $(torchref 8b-b8 llama3-8b.config.json --batch 8 --prompt-len 512 --gen 128)")
  table+=("torch 1b-b1: $(torchref 1b-b1 llama3.2-1b.config.json --batch 1 --prompt-len 512 --gen 256)")
  python3 - "$logs" <<'PY' > "$logs/ratios.txt"
import json, os, sys
logs = sys.argv[1]
def load(name):
    try: return json.load(open(os.path.join(logs, name)))
    except Exception: return None
# Ratios above 1: tpc's step is that many times faster than the reference's.
for shape, ref_name, label in (("8b-b1", "8b-b1", "PyTorch CUDA graph"),
                               ("8b-b1", "8b-b1-compile", "torch.compile + CUDA graph"),
                               ("8b-b8", "8b-b8", "PyTorch CUDA graph"),
                               ("1b-b1", "1b-b1", "PyTorch CUDA graph")):
    ours, ref = load(f"bench-{shape}.json"), load(f"torch-{ref_name}.json")
    if ours and ref:
        print(f"{shape}: tpc {ours['decode_ms_per_step']:.3f} ms vs {label} "
              f"{ref['decode_ms_per_step']:.3f} ms = {ref['decode_ms_per_step']/ours['decode_ms_per_step']:.2f}x")
b1, b8 = load("bench-8b-b1.json"), load("bench-8b-b8.json")
if b1 and b8:
    print(f"8b batch 8 / batch 1 step time: {b8['decode_ms_per_step']/b1['decode_ms_per_step']:.2f}")
PY
  while read -r line; do table+=("$line"); done < "$logs/ratios.txt"
fi

echo "=== summary ==="
printf '%s\n' "${table[@]}" | tee "$keep/summary.txt"
for f in "$logs"/*; do echo "=== $(basename "$f")"; cat "$f"; done > "$keep/suite-logs.txt"
exit $status
