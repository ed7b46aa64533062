#!/usr/bin/env bash
# Pipeline micro-batches on the CPU: a generated preset (default llama small) compiled for two
# stages of one rank each, and `tpexec bench` in engine mode with 8 sequences decoding at once
# (short prompts, so decode dominates), first with one micro-batch (the stages take turns), then
# with two in flight (the stages work at the same time), side by side in one run. Prints both
# reports and the ratio of their output tokens/s.
#   bench/pipeline-micro-batches.sh [--arch llama] [--preset small] [--stage-layers 3,1]
#                                   [--requests 8] [--input-len 8] [--output-len 64]
# The stage layers default to 3,1: the last stage also runs the lm_head, the first stage's
# embedding is a lookup, so three layers against one and the head balance their work.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
arch=llama; preset=small; stages=3,1; requests=8; input=8; output=64
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch=$2; shift ;;
    --preset) preset=$2; shift ;;
    --stage-layers) stages=$2; shift ;;
    --requests) requests=$2; shift ;;
    --input-len) input=$2; shift ;;
    --output-len) output=$2; shift ;;
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
"$bin/tpc" compile "$model" --world 2 --pp 2 --stage-layers "$stages" --max-context 1024 --quiet \
  -o "$plan"
echo "model $arch $preset, stage layers $stages, $(nproc) cores, $requests sequences x $input in / $output out"
"$bin/tpexec" bench "$plan" --backend cpu --requests "$requests" --input-len "$input" \
  --output-len "$output" --micro-batches 2 --compare-micro-batches
