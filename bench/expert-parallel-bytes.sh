#!/usr/bin/env bash
# Bytes a decode step moves and reads per rank, tensor-parallel against expert-parallel, for the
# Qwen3-30B-A3B and Mixtral-8x7B shapes at worlds 2, 4 and 8, from `tpc dump --format json`.
# The checkpoints are headers over sparse files (no weight bytes): the compiler reads only
# headers. Usage: bench/expert-parallel-bytes.sh [BUILD_DIR]   (default build)
set -euo pipefail
bin="${1:-build}/bin"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A safetensors header naming every tensor the family needs (Hugging Face names, bf16), then a
# hole up to the size the header promises.
sparse_checkpoint() {
  python3 - "$1" <<'PY'
import json, struct, sys
d = sys.argv[1]
c = json.load(open(d + "/config.json"))
H, V, L = c["hidden_size"], c["vocab_size"], c["num_hidden_layers"]
nh, kv = c["num_attention_heads"], c["num_key_value_heads"]
hd = c.get("head_dim") or H // nh
mixtral = c["model_type"] == "mixtral"
E = c["num_local_experts"] if mixtral else c["num_experts"]
I = c["intermediate_size"] if mixtral else c["moe_intermediate_size"]
t = {"model.embed_tokens.weight": [V, H], "model.norm.weight": [H]}
if not c.get("tie_word_embeddings"):
    t["lm_head.weight"] = [V, H]
for l in range(L):
    p = f"model.layers.{l}."
    t[p + "input_layernorm.weight"] = [H]
    t[p + "post_attention_layernorm.weight"] = [H]
    t[p + "self_attn.q_proj.weight"] = [nh * hd, H]
    t[p + "self_attn.k_proj.weight"] = [kv * hd, H]
    t[p + "self_attn.v_proj.weight"] = [kv * hd, H]
    t[p + "self_attn.o_proj.weight"] = [H, nh * hd]
    if not mixtral:
        t[p + "self_attn.q_norm.weight"] = [hd]
        t[p + "self_attn.k_norm.weight"] = [hd]
    moe = p + ("block_sparse_moe." if mixtral else "mlp.")
    t[moe + "gate.weight"] = [E, H]
    names = ("w1", "w3", "w2") if mixtral else ("gate_proj", "up_proj", "down_proj")
    for e in range(E):
        t[f"{moe}experts.{e}.{names[0]}.weight"] = [I, H]
        t[f"{moe}experts.{e}.{names[1]}.weight"] = [I, H]
        t[f"{moe}experts.{e}.{names[2]}.weight"] = [H, I]
header, offset = {}, 0
for name in sorted(t):
    n = 2
    for s in t[name]:
        n *= s
    header[name] = {"dtype": "BF16", "shape": t[name], "data_offsets": [offset, offset + n]}
    offset += n
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
with open(d + "/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text)
    f.truncate(8 + len(text) + offset)
PY
}

# Sourced with --functions-only (scripts/gpu/bundle.sh): sparse_checkpoint and nothing else.
[ "${1:-}" = --functions-only ] && return 0

# Per rank 0: its weights; the MoE token exchange (the all_reduces of the experts' partial sums)
# per token; and the expert bytes one decode step of batch 1 reads: on average (k of E experts
# chosen) and on the busiest rank (all k chosen experts on it, at most the experts it holds).
printf '%-14s %5s  %-15s %12s %14s %16s %16s\n' model world sharding "weights/rank" \
  "exchange B/tok" "experts read avg" "experts busiest"
for spec in "qwen3_moe qwen3-30b-a3b" "mixtral mixtral-8x7b"; do
  set -- $spec
  dir="$work/$2"
  "$bin/tpc" make-model --arch "$1" --preset "$2" --config-only --quiet -o "$dir"
  sparse_checkpoint "$dir"
  for world in 2 4 8; do
    for mode in tensor-parallel expert-parallel; do
      flag=""
      [ "$mode" = expert-parallel ] && flag="--expert-parallel"
      "$bin/tpc" compile "$dir" --world "$world" $flag --max-context 4096 --max-batch 1 --quiet \
        -o "$work/plan.fb"
      "$bin/tpc" dump "$work/plan.fb" --format json --rank 0 | python3 -c '
import json, sys
d = json.load(sys.stdin)
r, m, w = d["ranks"][0], d["model"], d["world"]
E, k = m["num_experts"], m["num_experts_per_tok"]
held = sum(x["bytes"] for x in r["weights"] if "experts." in x["slices"][0]["tensor"])
moe = {s["results"][0]["name"] for s in r["steps"] if s["op"] == "moe_experts"}
exchange = sum(s["comm_bytes_per_token"] for s in r["steps"]
               if s["op"] == "all_reduce" and s["operands"][0]["name"] in moe)
whole = sys.argv[2] == "expert-parallel"
average = held * k / E
busiest = held * min(k, E // w) / (E // w) if whole else average
mib = lambda b: "%.0f MiB" % (b / 2**20)
print("%-14s %5d  %-15s %12s %14d %16s %16s" % (sys.argv[1], w, sys.argv[2],
      "%.2f GiB" % (r["weight_bytes"] / 2**30), exchange, mib(average), mib(busiest)))
' "$2" "$mode"
    done
  done
done
