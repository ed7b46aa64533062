#!/usr/bin/env bash
# Builds here everything the GPU suite runs on the GPU machine, which has the CUDA toolkit and
# NCCL but no package registry: a Release build with the CUDA backend for sm_90a, the binaries
# and test binaries, the non-CUDA shared libraries they load, and the plans of the benchmark
# shapes (compiled here; the benchmarks make their weights on the GPU). Everything lands in
# gpu-bundle/ (git-ignored); copy it to the GPU machine beside the repository and run
# scripts/gpu/run-suite.sh (or engine-suite.sh) there.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build="$root/build-gpu"
out="$root/gpu-bundle"
models="$root/build/bench-models"

mkdir -p "$build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTPC_ENABLE_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90a > "$build/configure.log"
grep -q "CUDA backend on" "$build/configure.log" || { cat "$build/configure.log"; echo "error: the CUDA backend is off" >&2; exit 1; }
cmake --build "$build" --target tpc tpexec tpc_kernels_cuda_tests tpc_tools_tests tpc_executor_tests tpc_ipc_bench \
  tpc_gemv_bench tpc_moe_bench tpc_linear_bench -j"$(nproc)"

rm -rf "$out/bin" "$out/lib" "$out/plans" "$out/payload.tar.xz"
mkdir -p "$out/bin" "$out/lib" "$out/plans"
cp "$build"/bin/{tpc,tpexec,tpc_kernels_cuda_tests,tpc_tools_tests,tpc_executor_tests,tpc_ipc_bench,tpc_gemv_bench,tpc_moe_bench,tpc_linear_bench} "$out/bin/"
strip "$out"/bin/*  # gpu-bundle/ is copied to the GPU machine: keep it small
# Shared libraries the GPU machine lacks: everything but the CUDA libraries and the C runtime.
for b in "$out"/bin/*; do ldd "$b"; done | awk '/=> \//{print $3}' | sort -u |
  grep -Ev '/(libcuda|libcudart|libcublas|libcublasLt|libnccl|libc|libm|libstdc\+\+|libgcc_s|ld-linux-x86-64|libpthread|libdl|librt|libresolv)\.so' |
  while read -r lib; do cp -L "$lib" "$out/lib/"; done

# Benchmark shapes: compiled from generated checkpoints (kept in build/bench-models between runs).
tpc="$build/bin/tpc"
for preset in llama3-8b llama3.2-1b; do
  [ -f "$models/$preset/config.json" ] || "$tpc" make-model --arch llama --preset "$preset" -o "$models/$preset" --force
  "$tpc" compile "$models/$preset" --world 1 --dtype bf16 --max-context 4096 --max-batch 8 \
    --quiet -o "$out/plans/$preset.w1.fb"
  cp "$models/$preset/config.json" "$out/plans/$preset.config.json"
done
# The Llama-3-8B shape as a device map of an 8 GiB GPU and the CPU (scripts/gpu/device-map.sh).
"$tpc" compile "$models/llama3-8b" --dtype bf16 --max-context 4096 --max-batch 8 \
  --device-map auto --device-memory cuda:0=8GiB,cpu=64GiB --quiet -o "$out/plans/llama3-8b.map.fb"
# The engine's shapes: many sequences per iteration (CUDA Graph buckets up to --max-batch), and
# the Qwen3-30B-A3B MoE shape from a header over a sparse file (no weight bytes are needed).
"$tpc" compile "$models/llama3-8b" --world 1 --dtype bf16 --max-context 2048 --max-batch 256 \
  --quiet -o "$out/plans/llama3-8b.b256.w1.fb"
# The same shape at world 2, for two ranks sharing one GPU over the IPC communicator; and the
# 1B shape at world 2 for the fault test (a rank killed or stopped mid-decode).
"$tpc" compile "$models/llama3-8b" --world 2 --dtype bf16 --max-context 2048 --max-batch 256 \
  --quiet -o "$out/plans/llama3-8b.b256.w2.fb"
"$tpc" compile "$models/llama3.2-1b" --world 2 --dtype bf16 --max-context 4096 --max-batch 8 \
  --quiet -o "$out/plans/llama3.2-1b.w2.fb"
moe="$models/qwen3-30b-a3b"
if [ ! -f "$moe/model.safetensors" ]; then
  "$tpc" make-model --arch qwen3_moe --preset qwen3-30b-a3b --config-only --quiet -o "$moe" --force
  bash -c "source '$root/bench/expert-parallel-bytes.sh' --functions-only; sparse_checkpoint '$moe'"
fi
"$tpc" compile "$moe" --world 1 --dtype bf16 --max-context 2048 --max-batch 256 --quiet \
  -o "$out/plans/qwen3-30b-a3b.b256.w1.fb"
cp "$moe/config.json" "$out/plans/qwen3-30b-a3b.config.json"
# Mixtral-8x7B (94 GB of bf16 weights: it fits one H200 with room for a small KV pool).
mixtral="$models/mixtral-8x7b"
if [ ! -f "$mixtral/model.safetensors" ]; then
  "$tpc" make-model --arch mixtral --preset mixtral-8x7b --config-only --quiet -o "$mixtral" --force
  bash -c "source '$root/bench/expert-parallel-bytes.sh' --functions-only; sparse_checkpoint '$mixtral'"
fi
"$tpc" compile "$mixtral" --world 1 --dtype bf16 --max-context 2048 --max-batch 8 --quiet \
  -o "$out/plans/mixtral-8x7b.w1.fb"
# LLaVA-1.5-7B (CLIP ViT-L/14 at 336 px and a Vicuna-7B text model) at world 1, for the image
# bench; its preprocessor_config.json travels beside the plan for `tpexec bench --image`.
llava="$models/llava-1.5-7b"
if [ ! -f "$llava/model.safetensors" ]; then
  mkdir -p "$llava"
  bash -c "source '$root/bench/llava-7b-plan.sh' --functions-only; llava_checkpoint '$llava'"
fi
"$tpc" compile "$llava" --world 1 --dtype bf16 --max-context 4096 --max-batch 8 --quiet \
  -o "$out/plans/llava-1.5-7b.w1.fb"
mkdir -p "$out/plans/llava-1.5-7b"
cp "$llava/preprocessor_config.json" "$out/plans/llava-1.5-7b/"
# gpu-bundle/ is copied to the GPU machine, so binaries and libraries travel compressed and
# scripts/gpu/unpack.sh opens them there.
tar -C "$out" -cJf "$out/payload.tar.xz" bin lib
rm -rf "$out/bin" "$out/lib"
du -sh "$out"
echo "gpu-bundle/ is ready: copy it to the GPU machine beside the repository"
