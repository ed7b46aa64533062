#!/usr/bin/env bash
# CPU decode speed: a generated preset (default llama small, ~21M parameters) compiled for each
# world and run with tpexec, greedy, 128 new tokens after a 16-token prompt. Prints decode
# tokens/s per world, measured in the same run.
#   bench/cpu-decode.sh [--preset small] [--arch llama] [--worlds "1 2"] [--tokens 128]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
arch=llama; preset=small; worlds="1 2"; tokens=128
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch=$2; shift ;;
    --preset) preset=$2; shift ;;
    --worlds) worlds=$2; shift ;;
    --tokens) tokens=$2; shift ;;
    *) echo "error: unknown flag $1"; exit 2 ;;
  esac
  shift
done
bin="$root/build/bin"
work="$root/build/bench-models"
model="$work/$arch-$preset"
mkdir -p "$work"
[ -f "$model/config.json" ] || "$bin/tpc" make-model --arch "$arch" --preset "$preset" --quiet -o "$model"
echo "model $arch $preset, $(nproc) cores, prompt 16 tokens, $tokens new tokens"
printf "%-6s %-18s %-14s %s\n" world decode_ms/token tokens/s prefill_ms
for w in $worlds; do
  "$bin/tpc" compile "$model" --world "$w" --max-context 1024 --quiet -o "$work/$arch-$preset.w$w.fb"
  json=$("$bin/tpexec" "$work/$arch-$preset.w$w.fb" --prompt-ids 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 \
         --max-new-tokens "$tokens" --ignore-eos --json)
  python3 - "$w" "$json" <<'PY'
import json, sys
w, r = sys.argv[1], json.loads(sys.argv[2])
ms = r["timings"]["decode_ms_per_token"]
print(f"{w:<6} {ms:<18.2f} {1000 / ms:<14.1f} {r['timings']['prefill_ms']:.1f}")
PY
done
