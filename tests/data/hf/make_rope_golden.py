#!/usr/bin/env python3
"""Golden RoPE data from Hugging Face transformers for the kernel tests (tests/kernels).

For each case: the inverse frequencies and attention scaling of transformers' rotary embedding
module, and q rotated by transformers' apply_rotary_pos_emb at a few positions, all fp32 on the
CPU. Floats are written with repr of their exact value, so they read back bit for bit.

    python3 tests/data/hf/make_rope_golden.py tests/data/kernels/rope_golden.json
"""
import json
import sys

import torch
import transformers
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

CASES = {
    "default-theta1e4-dim10": dict(rope_type="default", rope_theta=10000.0, head_dim=10, max_pos=4096),
    "default-theta1e6-dim128": dict(rope_type="default", rope_theta=1000000.0, head_dim=128, max_pos=40960),
    "linear-factor2-dim16": dict(rope_type="linear", rope_theta=10000.0, head_dim=16, max_pos=4096, factor=2.0),
    "llama3-llama31-dim128": dict(rope_type="llama3", rope_theta=500000.0, head_dim=128, max_pos=131072,
                                  factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                  original_max_position_embeddings=8192),
    "llama3-orig64-dim16": dict(rope_type="llama3", rope_theta=500000.0, head_dim=16, max_pos=256, factor=8.0,
                                low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=64),
    "yarn-qwen3-dim128": dict(rope_type="yarn", rope_theta=1000000.0, head_dim=128, max_pos=131072, factor=4.0,
                              original_max_position_embeddings=32768),
    "yarn-notruncate-dim64": dict(rope_type="yarn", rope_theta=10000.0, head_dim=64, max_pos=16384, factor=4.0,
                                  original_max_position_embeddings=4096, beta_fast=32.0, beta_slow=1.0,
                                  truncate=False),
    "yarn-attnfactor-dim32": dict(rope_type="yarn", rope_theta=10000.0, head_dim=32, max_pos=8192, factor=2.0,
                                  original_max_position_embeddings=4096, attention_factor=1.5, beta_fast=16.0,
                                  beta_slow=2.0),
}
POSITIONS = [0, 1, 7, 300, 5000]
HEADS = 2


def rotary(case):
    params = {k: v for k, v in case.items() if k not in ("head_dim", "max_pos")}
    heads = 4
    config = LlamaConfig(hidden_size=case["head_dim"] * heads, num_attention_heads=heads, num_key_value_heads=heads,
                         head_dim=case["head_dim"], max_position_embeddings=case["max_pos"], rope_parameters=params)
    return LlamaRotaryEmbedding(config)


def main(out_path):
    torch.manual_seed(0)
    result = {"transformers": transformers.__version__, "torch": torch.__version__, "positions": POSITIONS,
              "heads": HEADS, "cases": {}}
    for name, case in CASES.items():
        module = rotary(case)
        dim = case["head_dim"]
        positions = torch.tensor([POSITIONS])
        q = torch.randn(1, HEADS, len(POSITIONS), dim, dtype=torch.float32)
        cos, sin = module(q, positions)
        rotated, _ = apply_rotary_pos_emb(q, q, cos, sin)
        # Tokens-major [tokens, heads * dim], the layout the kernels take.
        to_rows = lambda t: t[0].transpose(0, 1).reshape(len(POSITIONS), HEADS * dim).flatten().tolist()
        result["cases"][name] = {
            "params": case,
            "inv_freq": module.inv_freq.float().tolist(),
            "attention_scaling": float(module.attention_scaling),
            "x": to_rows(q),
            "rotated": to_rows(rotated),
        }
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
