#!/usr/bin/env bash
# The LLaVA-1.5-7B shape (CLIP ViT-L/14 at 336 px, a Vicuna-7B llama text model) compiled for
# world 8: the vision tower's per-rank split from `tpc dump`, beside the text model's. The
# checkpoint is a safetensors header in the Hub's llava-hf layout over a sparse file (no weight
# bytes): the compiler reads only headers. Usage: bench/llava-7b-plan.sh [BUILD_DIR] [WORLD]
# (or sourced with --functions-only for llava_checkpoint DIR alone)
set -euo pipefail
bin="${1:-build}/bin"
world="${2:-8}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Writes the checkpoint into folder $1: config.json, the header over a hole, and the llava-1.5
# preprocessor_config.json (CLIPImageProcessor at 336 px), so that `--image` works on it.
llava_checkpoint() {
  python3 - "$1" <<'PY'
import json, struct, sys
d = sys.argv[1]
vision = dict(model_type="clip_vision_model", hidden_size=1024, intermediate_size=4096,
              num_hidden_layers=24, num_attention_heads=16, image_size=336, patch_size=14,
              hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768)
text = dict(model_type="llama", vocab_size=32064, hidden_size=4096, intermediate_size=11008,
            num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
            max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0)
config = dict(model_type="llava", architectures=["LlavaForConditionalGeneration"],
              vision_config=vision, text_config=text, image_token_index=32000,
              image_seq_length=576, vision_feature_layer=-2,
              vision_feature_select_strategy="default", projector_hidden_act="gelu",
              multimodal_projector_bias=True, torch_dtype="float16")
json.dump(config, open(d + "/config.json", "w"), indent=1)
H, I, L, P = 1024, 4096, 24, (336 // 14) ** 2 + 1
T, V, TI, TL = 4096, 32064, 11008, 32
v = "vision_tower.vision_model."
t = {v + "embeddings.patch_embedding.weight": [H, 3, 14, 14], v + "embeddings.class_embedding": [H],
     v + "embeddings.position_embedding.weight": [P, H], v + "pre_layrnorm.weight": [H],
     v + "pre_layrnorm.bias": [H], v + "post_layernorm.weight": [H], v + "post_layernorm.bias": [H]}
for l in range(L):
    p = f"{v}encoder.layers.{l}."
    for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
        t[p + f"self_attn.{n}.weight"], t[p + f"self_attn.{n}.bias"] = [H, H], [H]
    for n in ("layer_norm1", "layer_norm2"):
        t[p + n + ".weight"], t[p + n + ".bias"] = [H], [H]
    t[p + "mlp.fc1.weight"], t[p + "mlp.fc1.bias"] = [I, H], [I]
    t[p + "mlp.fc2.weight"], t[p + "mlp.fc2.bias"] = [H, I], [H]
t["multi_modal_projector.linear_1.weight"], t["multi_modal_projector.linear_1.bias"] = [T, H], [T]
t["multi_modal_projector.linear_2.weight"], t["multi_modal_projector.linear_2.bias"] = [T, T], [T]
m = "language_model.model."
t[m + "embed_tokens.weight"], t[m + "norm.weight"] = [V, T], [T]
t["language_model.lm_head.weight"] = [V, T]
for l in range(TL):
    p = f"{m}layers.{l}."
    t[p + "input_layernorm.weight"] = t[p + "post_attention_layernorm.weight"] = [T]
    for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
        t[p + f"self_attn.{n}.weight"] = [T, T]
    t[p + "mlp.gate_proj.weight"] = t[p + "mlp.up_proj.weight"] = [TI, T]
    t[p + "mlp.down_proj.weight"] = [T, TI]
header, offset = {}, 0
for name in sorted(t):
    n = 2
    for s in t[name]:
        n *= s
    header[name] = {"dtype": "F16", "shape": t[name], "data_offsets": [offset, offset + n]}
    offset += n
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
with open(d + "/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text)
    f.truncate(8 + len(text) + offset)
mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
json.dump(dict(image_processor_type="CLIPImageProcessor", do_resize=True,
               size=dict(shortest_edge=336), resample=3, do_center_crop=True,
               crop_size=dict(height=336, width=336), do_rescale=True,
               rescale_factor=1 / 255, do_normalize=True, image_mean=mean, image_std=std,
               do_convert_rgb=True), open(d + "/preprocessor_config.json", "w"), indent=1)
PY
}

# Sourced with --functions-only (scripts/gpu/bundle.sh): llava_checkpoint and nothing else.
[ "${1:-}" = --functions-only ] && return 0

llava_checkpoint "$work"
"$bin/tpc" inspect "$work" | sed -n '1,6p'
"$bin/tpc" compile "$work" --world "$world" --max-context 4096 --max-batch 8 --quiet -o "$work/plan.fb"
"$bin/tpc" dump "$work/plan.fb" --rank 0 > "$work/dump.txt"
# The rank's two programs: their headers, the tower's first layer, its collectives.
grep -E '^(vision tower, )?rank 0:|collectives per step' "$work/dump.txt"
awk '/^vision tower, rank 0:/ {on = 1} /^rank 0:/ {on = 0} on && $4 ~ /^v0\./' \
  "$work/dump.txt" | cut -c1-120
