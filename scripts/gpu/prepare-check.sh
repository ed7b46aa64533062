#!/usr/bin/env bash
# Builds here what scripts/gpu/check_hf_load.py checks on the GPU machine: one tiny generated
# model of every family (weights), and the config of every real-shape preset (no weights),
# each with the parameter count tpc expects. Prints the folder to copy to the GPU machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tpc="$root/build/bin/tpc"
out="$root/gpu-bundle/models"
rm -rf "$out" && mkdir -p "$out"
while read -r family preset; do
  [ -z "$family" ] && continue
  dir="$out/$family-$preset"
  "$tpc" make-model --arch "$family" --preset "$preset" --quiet -o "$dir" --shard-size 1
  "$tpc" inspect "$dir" --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["parameters"])' \
    > "$dir/expected_parameters.txt"
done <<'LIST'
llama tiny
mistral tiny
qwen2 tiny
qwen3 tiny
qwen3_moe tiny
mixtral tiny
LIST
# Real shapes: config only (too big to copy); the check builds them on the meta device.
for spec in llama:llama3-8b llama:llama3.2-1b llama:llama3-70b mistral:mistral-7b qwen2:qwen2.5-7b \
            qwen3:qwen3-8b qwen3_moe:qwen3-30b-a3b mixtral:mixtral-8x7b; do
  family=${spec%%:*}; preset=${spec#*:}
  dir="$out/$family-$preset"
  mkdir -p "$dir"
  "$tpc" make-model --arch "$family" --preset "$preset" --config-only -o "$dir" \
    | sed -E 's/.*, ([0-9]+) parameters$/\1/' > "$dir/expected_parameters.txt"
done
echo "gpu-bundle/ is ready: copy it to the GPU machine beside the repository"
