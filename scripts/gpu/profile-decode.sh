#!/usr/bin/env bash
# Where a decode step's time goes, kernel by kernel, on the GPU machine (after
# scripts/gpu/bundle.sh and gpu-bundle/ copied there): Nsight Compute times every kernel of a short
# `tpexec bench` run; the one-token launches (the decode graph's) are summed per kernel and
# divided by the decode steps that ran.
#   scripts/gpu/profile-decode.sh PLAN [bench flags...]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bundle="$root/gpu-bundle"
"$root/scripts/gpu/unpack.sh"
toolkit=$(dirname "$(dirname "$(command -v nvcc)")")
export LD_LIBRARY_PATH="$bundle/lib:$toolkit/lib64:${LD_LIBRARY_PATH:-}" NCCL_NVLS_ENABLE=0
plan=$1; shift
csv=$(mktemp)
# Prompt of 9 tokens: prefill runs eagerly through cuBLASLt, so its launches differ from decode's.
ncu --clock-control none --csv --page raw \
  --metrics gpu__time_duration.sum,launch__grid_size,launch__block_size \
  "$bundle/bin/tpexec" bench "$plan" --synthetic-weights --prompt-len 9 --gen 2 "$@" > "$csv" 2>/dev/null
[ -n "${OUT:-}" ] && gzip -c "$csv" > "$OUT/ncu-$(basename "$plan" .fb).csv.gz"
python3 - "$csv" <<'PY'
import csv, collections, sys
rows = [r for r in csv.DictReader(l for l in open(sys.argv[1]) if l.startswith('"'))]
units = rows[0].get("gpu__time_duration.sum") if rows else "?"
print("duration unit:", units)
scale = {"nsecond": 1.0, "usecond": 1e3, "msecond": 1e6}.get(units, 1.0)
def number(text):
    try:
        return float(text.replace(",", ""))
    except (AttributeError, ValueError):
        return None
rows = [r for r in rows if r.get("Kernel Name") and number(r.get("gpu__time_duration.sum")) is not None]
# Decode launches are the ones that run after the last cuBLASLt (prefill) kernel.
def is_cublas(name):
    name = name.lower()
    return any(k in name for k in ("gemm", "cutlass", "xmma", "sm90_", "cublas"))
# Decode launches: from the first one-token GEMV to the first cuBLASLt launch after the last one
# (the bench's GEMM-ceiling measurement), prefill and measurements excluded.
gemv = [i for i, r in enumerate(rows) if "gemvKernel" in r["Kernel Name"]]
first = max((i for i in range(gemv[0]) if is_cublas(rows[i]["Kernel Name"])), default=-1) + 1 if gemv else 0
end = min((i for i in range(gemv[-1], len(rows)) if is_cublas(rows[i]["Kernel Name"])), default=len(rows)) if gemv else 0
decode = [r for r in rows[first:end] if "fillUniform" not in r["Kernel Name"]]
print(len(rows), "launches;", "decode range", first, end)
steps = 5  # 3 warm-up + 2 timed decode steps
total = collections.Counter(); count = collections.Counter()
for r in decode:
    name = r["Kernel Name"].split("(")[0][:70]
    total[name] += number(r["gpu__time_duration.sum"]) * scale; count[name] += 1
all_ns = sum(total.values())
print(f"{len(decode)} decode launches; per step: {all_ns/steps/1e3:.1f} us of kernel time, {len(decode)/steps:.0f} kernels")
for name, ns in total.most_common():
    print(f"{ns/steps/1e3:9.1f} us  {count[name]/steps:6.1f}x  {name}")
PY
