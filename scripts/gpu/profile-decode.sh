#!/usr/bin/env bash
# Where a decode step's time goes, kernel by kernel, on the GPU machine (after
# scripts/gpu/bundle.sh and gpu-bundle/ copied there): Nsight Compute times every kernel of the
# timed decode steps of a short `tpexec bench` run, summed per kernel and divided by the steps.
#   [PROMPT_LEN=N] scripts/gpu/profile-decode.sh PLAN [bench flags...]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bundle="$root/gpu-bundle"
"$root/scripts/gpu/unpack.sh"
toolkit=$(dirname "$(dirname "$(command -v nvcc)")")
export LD_LIBRARY_PATH="$bundle/lib:$toolkit/lib64:${LD_LIBRARY_PATH:-}" NCCL_NVLS_ENABLE=0
plan=$1; shift
csv=$(mktemp)
# Only the timed decode steps are recorded (the bench brackets them for a profiler started with
# --profile-from-start off): no weight fill, prefill, graph capture or ceiling measurement.
# PROMPT_LEN (default 9) sets the context the steps attend over; the bench flags given after the
# plan (say --batch 64) pass through.
steps=2
ncu --clock-control none --csv --page raw --profile-from-start off \
  --metrics gpu__time_duration.sum,launch__grid_size,launch__block_size \
  "$bundle/bin/tpexec" bench "$plan" --synthetic-weights --prompt-len "${PROMPT_LEN:-9}" --gen $steps "$@" > "$csv" 2>/dev/null
[ -n "${OUT:-}" ] && gzip -c "$csv" > "$OUT/ncu-$(basename "$plan" .fb).csv.gz"
python3 - "$csv" "$steps" <<'PY'
import csv, collections, sys
rows = [r for r in csv.DictReader(l for l in open(sys.argv[1]) if l.startswith('"'))]
steps = int(sys.argv[2])
units = rows[0].get("gpu__time_duration.sum") if rows else "?"
print("duration unit:", units)
scale = {"nsecond": 1.0, "usecond": 1e3, "msecond": 1e6}.get(units, 1.0)
def number(text):
    try:
        return float(text.replace(",", ""))
    except (AttributeError, ValueError):
        return None
decode = [r for r in rows if r.get("Kernel Name") and number(r.get("gpu__time_duration.sum")) is not None]
total = collections.Counter(); count = collections.Counter(); grid = {}
for r in decode:
    name = r["Kernel Name"].split("(")[0][:90]
    total[name] += number(r["gpu__time_duration.sum"]) * scale; count[name] += 1
    grid[name] = (r.get("launch__grid_size"), r.get("launch__block_size"))
all_ns = sum(total.values())
print(f"{len(decode)} decode launches; per step: {all_ns/steps/1e3:.1f} us of kernel time, {len(decode)/steps:.0f} kernels")
for name, ns in total.most_common():
    print(f"{ns/steps/1e3:9.1f} us  {count[name]/steps:6.1f}x  grid {grid[name][0]:>6} x {grid[name][1]:>4}  {name}")
PY
