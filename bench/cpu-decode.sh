#!/usr/bin/env bash
# CPU decode speed: a generated preset (default llama small, ~21M parameters) compiled for each
# world and run with tpexec, greedy, 128 new tokens after a 16-token prompt. Prints decode
# tokens/s per world and communicator (shared memory, Gloo), measured in the same run, and each
# world's time per token over world 1's.
#   bench/cpu-decode.sh [--preset small] [--arch llama] [--worlds "1 2"] [--comms "shm gloo"]
#                       [--tokens 128]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
arch=llama; preset=small; worlds="1 2"; comms="shm gloo"; tokens=128
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch=$2; shift ;;
    --preset) preset=$2; shift ;;
    --worlds) worlds=$2; shift ;;
    --comms) comms=$2; shift ;;
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
printf "%-6s %-6s %-18s %-14s %-12s %s\n" world comm decode_ms/token tokens/s x_world1 prefill_ms
base=""
for w in $worlds; do
  "$bin/tpc" compile "$model" --world "$w" --max-context 1024 --quiet -o "$work/$arch-$preset.w$w.fb"
  for c in $comms; do
    [ "$w" = 1 ] && [ "$c" != "${comms%% *}" ] && continue  # world 1 has no communicator
    json=$("$bin/tpexec" "$work/$arch-$preset.w$w.fb" --prompt-ids 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 \
           --max-new-tokens "$tokens" --ignore-eos --comm "$c" --json)
    line=$(python3 - "$w" "$json" "$base" <<'PY'
import json, sys
w, r, base = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
ms = r["timings"]["decode_ms_per_token"]
ratio = f"{ms / float(base):.1f}" if base else "1.0"
print(f"{ms} {w:<6} {r['communicator']:<6} {ms:<18.3f} {1000 / ms:<14.1f} {ratio:<12} {r['timings']['prefill_ms']:.1f}")
PY
)
    [ -z "$base" ] && base=${line%% *}
    echo "${line#* }"
  done
done
