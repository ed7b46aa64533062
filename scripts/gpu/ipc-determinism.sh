#!/usr/bin/env bash
# Run-to-run and graph-against-eager agreement of the golden models with ranks sharing one GPU
# over the IPC communicator (run under MPS, as engine-suite.sh does): each model twice with CUDA
# Graphs and twice eager, then per logits row the largest difference from the first run and the
# error against transformers. Rows that differ between two runs of the same mode are run-to-run
# nondeterminism, not graph replay. IPC_MODES narrows the modes (default: graph-1 graph-2 eager-1
# eager-2 nogemv-graph nogemv-eager nopdl-graph nopdl-eager; nogemv: cuBLASLt instead of the GEMV,
# nopdl: the GEMV without programmatic dependent launch); TPC_IPC_VERIFY=1 in the environment
# makes every collective check the protocol as it runs (a violation fails the run, naming it).
#   scripts/gpu/ipc-determinism.sh BIN_DIR OUT_FILE [WORLD] [MODEL...]
set -uo pipefail
bin=$1 out=$2 world=${3:-4}; shift 3 2>/dev/null || shift $#
root=$(cd "$(dirname "$0")/../.." && pwd)
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(mistral-gqa qwen2-bias-tied qwen3moe llama-gqa-llama3rope)
tmp=$(mktemp -d)
for model in "${models[@]}"; do
  dir="${TPC_TEST_DATA_DIR:-$root/tests/data}/hf/$model"
  ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$dir/golden.json'))['prompt_ids'])))")
  n=$(python3 -c "import json;print(len(json.load(open('$dir/golden.json'))['generated_ids']))")
  "$bin/tpc" compile "$dir" --dtype bf16 --world "$world" --quiet -o "$tmp/$model.fb" || continue
  runs=()
  for mode in ${IPC_MODES:-graph-1 graph-2 eager-1 eager-2 nogemv-graph nogemv-eager nopdl-graph nopdl-eager}; do
    extra=(); env=()
    case $mode in *eager*) extra=(--eager) ;; esac
    case $mode in nogemv*) env=(TPC_NO_GEMV=1) ;; nopdl*) env=(TPC_NO_PDL=1) ;; esac
    env "${env[@]}" timeout 60 "$bin/tpexec" "$tmp/$model.fb" --backend cuda --comm ipc \
      --prompt-ids "$ids" --max-new-tokens "$n" --ignore-eos --json \
      --logits-out "$tmp/$model.$mode.npy" "${extra[@]}" > "$tmp/$model.$mode.json" 2>&1 ||
      echo "$model $mode: failed: $(tail -c 300 "$tmp/$model.$mode.json")" >> "$out"
    runs+=("$tmp/$model.$mode.npy")
  done
  python3 - "$model" "$dir/logits.npy" "${runs[@]}" >> "$out" <<'PY'
import sys, os, numpy as np
model, ref, runs = sys.argv[1], np.load(sys.argv[2]), sys.argv[3:]
have = [r for r in runs if os.path.exists(r)]
if not have:
    print(model, "no runs"); sys.exit()
base = np.load(have[0])
for r in have:
    a = np.load(r)
    name = os.path.basename(r).split('.')[1]
    diff = np.abs(a - base).max(axis=1)
    err = np.abs(a - ref).max(axis=1) / np.abs(ref).max(axis=1)
    print(f"{model} {name}: rows differing from {os.path.basename(have[0]).split('.')[1]}: "
          f"{[int(i) for i in np.nonzero(diff)[0]]} max {diff.max():.3g}; "
          f"worst row error vs transformers {err.max():.3g}; ids {np.argmax(a, axis=1).tolist()}")
PY
done
rm -rf "$tmp"
