#!/usr/bin/env bash
# Pipeline micro-batches on the CPU: a generated preset (default llama small) compiled for two
# stages of one rank each, and `tpexec bench` in engine mode with 8 sequences decoding at once
# (short prompts, so decode dominates), first with one micro-batch (the stages take turns), then
# with two in flight (the stages work at the same time), side by side in one run. Prints both
# reports and the ratio of their output tokens/s, then the two ceilings of that ratio: what one
# micro-batch of half the sequences costs against the whole batch, and what two processes get
# from this host at once (two one-thread world-1 runs together against one alone).
#   bench/pipeline-micro-batches.sh [--arch llama] [--preset small] [--stage-layers 2,2]
#                                   [--requests 8] [--input-len 8] [--output-len 64]
#                                   [--max-batch 8]
# The stage layers default to 2,2: measured on llama small, the two stages then take about the
# same time per decode iteration (the last one's lm_head costs less than a layer).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
arch=llama; preset=small; stages=2,2; requests=8; input=8; output=64; batch=8
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch=$2; shift ;;
    --preset) preset=$2; shift ;;
    --stage-layers) stages=$2; shift ;;
    --requests) requests=$2; shift ;;
    --input-len) input=$2; shift ;;
    --output-len) output=$2; shift ;;
    --max-batch) batch=$2; shift ;;
    *) echo "error: unknown flag $1"; exit 2 ;;
  esac
  shift
done
bin="${TPC_BIN:-$root/build/bin}"
work="$root/build/bench-models"
model="$work/$arch-$preset"
plan="$work/$arch-$preset.pp2.fb"
mkdir -p "$work"
[ -f "$model/config.json" ] || "$bin/tpc" make-model --arch "$arch" --preset "$preset" --quiet -o "$model"
"$bin/tpc" compile "$model" --world 2 --pp 2 --stage-layers "$stages" --max-context 1024 \
  --max-batch "$batch" --quiet -o "$plan"
echo "model $arch $preset, stage layers $stages, $(nproc) cores, $requests sequences x $input in / $output out"
"$bin/tpexec" bench "$plan" --backend cpu --requests "$requests" --input-len "$input" \
  --output-len "$output" --micro-batches 2 --compare-micro-batches
# The bound: two micro-batches of half the sequences cost each stage two passes of half the
# batch, so with the stages perfectly overlapped and balanced the speed-up is at most the decode
# iteration time of the whole batch over that of half of it (one micro-batch, both measured).
half=$((requests / 2))
ms() {
  "$bin/tpexec" bench "$plan" --backend cpu --requests "$1" --input-len "$input" \
    --output-len "$output" --micro-batches 1 --json |
    python3 -c "import json, sys; print(json.loads(sys.stdin.readlines()[-1])['mean_decode_iteration_ms'])"
}
full_ms=$(ms "$requests"); half_ms=$(ms "$half")
python3 - "$requests" "$full_ms" "$half" "$half_ms" <<'PY'
import sys
n, full, h, half = sys.argv[1], float(sys.argv[2]), sys.argv[3], float(sys.argv[4])
print(f"decode iteration, one micro-batch: {full:.2f} ms at {n} sequences, {half:.2f} ms at {h}: "
      f"two micro-batches can at best reach {full / half:.2f}x")
PY
# The host's room for two processes at once.
w1="$work/$arch-$preset.w1.fb"
"$bin/tpc" compile "$model" --world 1 --max-context 1024 --max-batch "$batch" --quiet -o "$w1"
tps() {
  TPC_KERNEL_THREADS=1 "$bin/tpexec" bench "$w1" --backend cpu --requests "$requests" \
    --input-len "$input" --output-len "$output" --json |
    python3 -c "import json, sys; print(json.loads(sys.stdin.readlines()[-1])['output_tokens_per_s'])"
}
alone=$(tps); tps > "$work/together.a" & tps > "$work/together.b"; wait
python3 - "$alone" "$(cat "$work/together.a")" "$(cat "$work/together.b")" <<'PY'
import sys
alone, a, b = map(float, sys.argv[1:])
print(f"two one-thread world-1 runs at once: {a + b:.1f} output tokens/s together, "
      f"{alone:.1f} alone: this host gives two processes {(a + b) / alone:.2f}x one")
PY
rm -f "$work/together.a" "$work/together.b"
