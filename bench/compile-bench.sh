#!/usr/bin/env bash
# Compile-time benchmark: a generated llama3-8b checkpoint (16 GB of bf16, 4 shards), compiled
# for world 8. GNU time's report shows the wall time and the peak resident memory: a compiler
# that paged in weight bytes would show gigabytes there.
#   bench/compile-bench.sh [--preset llama3-8b] [--world 8]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
preset=llama3-8b; world=8
while [ $# -gt 0 ]; do
  case "$1" in
    --preset) preset=$2; shift ;;
    --world) world=$2; shift ;;
    *) echo "error: unknown flag $1"; exit 2 ;;
  esac
  shift
done
command -v /usr/bin/time >/dev/null || { echo "installing GNU time"; apt-get install -y -qq time >/dev/null; }
tpc="$root/build/bin/tpc"
model="$root/build/bench-models/$preset"
if [ ! -f "$model/config.json" ]; then
  "$tpc" make-model --arch llama --preset "$preset" -o "$model"
fi
du -sh "$model"
plan="$root/build/bench-models/$preset.w$world.fb"
for run in 1 2 3; do
  /usr/bin/time -v "$tpc" compile "$model" --world "$world" -o "$plan" --quiet 2> "$plan.time"
  grep -E "Elapsed \(wall|Maximum resident|File system inputs" "$plan.time" | sed "s/^/run $run: /"
done
"$tpc" compile "$model" --world "$world" -o "$plan" | tail -4
