#!/usr/bin/env python3
"""Golden data from Hugging Face transformers for the executor's agreement tests.

For each case: a tiny random-init fp32 model built by transformers itself, saved with
save_pretrained (so the checkpoint layout is whatever transformers writes), plus transformers'
greedy continuation of a fixed prompt and the logits of every step.

    python3 tests/data/hf/make_golden.py OUT_DIR

writes OUT_DIR/<case>/{config.json, model.safetensors, golden.json, logits.npy}:
  golden.json  {"case", "prompt_ids", "generated_ids", "transformers", "torch", "tensor_names"}
  logits.npy   float32 [max_new_tokens, vocab_size]; row 0 holds the logits at the last prompt
               position, row i the logits after the i-th generated token.
Runs on the CPU in fp32 with eager attention, so the reference has no TF32 or kernel choice in it.
"""
import json
import os
import struct
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM

PROMPT = [1, 17, 42, 99, 3, 201, 7, 150, 88, 5]
NEW_TOKENS = 8

BASE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=8,
            num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6,
            initializer_range=0.08, bos_token_id=1, eos_token_id=None, pad_token_id=None,
            tie_word_embeddings=False)

CASES = {
    # GQA (8 heads over 2 KV heads) with a vocab that no world > 1 divides, and llama3 RoPE scaling.
    "llama-gqa-llama3rope": ("llama", dict(vocab_size=251, rope_theta=500000.0,
                             rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                           "high_freq_factor": 4.0, "original_max_position_embeddings": 64})),
    "mistral-gqa": ("mistral", dict(vocab_size=256, rope_theta=10000.0, sliding_window=None)),
    # q/k/v bias with tied embeddings.
    "qwen2-bias-tied": ("qwen2", dict(vocab_size=250, rope_theta=10000.0, tie_word_embeddings=True,
                        use_sliding_window=False)),
    # Per-head q/k RMSNorm with head_dim 32 != hidden / heads.
    "qwen3-qknorm-headdim": ("qwen3", dict(vocab_size=256, rope_theta=10000.0, head_dim=32,
                             use_sliding_window=False, attention_bias=False)),
    "qwen3moe": ("qwen3_moe", dict(vocab_size=256, rope_theta=10000.0, head_dim=16, num_experts=8,
                 num_experts_per_tok=2, moe_intermediate_size=32, norm_topk_prob=True,
                 decoder_sparse_step=1, mlp_only_layers=[], use_sliding_window=False,
                 output_router_logits=False)),
    "mixtral": ("mixtral", dict(vocab_size=256, rope_theta=1000000.0, num_local_experts=8,
                num_experts_per_tok=2, sliding_window=None, output_router_logits=False)),
}


def save_npy(path, tensor):
    # .npy v1.0 by hand (numpy may be absent): little-endian float32, C order.
    data = tensor.contiguous().to(torch.float32)
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % "".join(f"{d}, " for d in data.shape)
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1"))
        values = data.flatten().tolist()
        f.write(struct.pack(f"<{len(values)}f", *values))


def perturb_norms_and_biases(model, generator):
    # transformers initialises norm weights to 1 and biases to 0; make them matter in the test.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(0.1 * torch.randn(p.shape, generator=generator))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))


def make_case(out_dir, name, model_type, overrides):
    torch.manual_seed(1234)
    config = transformers.AutoConfig.for_model(model_type, **{**BASE, **overrides})
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").to(torch.float32).eval()
    perturb_norms_and_biases(model, torch.Generator().manual_seed(99))
    path = os.path.join(out_dir, name)
    model.save_pretrained(path, safe_serialization=True)
    ids = torch.tensor([PROMPT])
    with torch.no_grad():
        out = model.generate(ids, do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                             output_logits=True, return_dict_in_generate=True, eos_token_id=None, pad_token_id=0)
    generated = out.sequences[0, len(PROMPT):].tolist()
    logits = torch.stack([l[0] for l in out.logits]).to(torch.float32)
    save_npy(os.path.join(path, "logits.npy"), logits)
    from safetensors import safe_open
    with safe_open(os.path.join(path, "model.safetensors"), "pt") as f:
        names = sorted(f.keys())
    golden = {"case": name, "prompt_ids": PROMPT, "generated_ids": generated,
              "transformers": transformers.__version__, "torch": torch.__version__, "tensor_names": names}
    with open(os.path.join(path, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
    top2 = torch.topk(logits, 2, dim=1).values
    margin = (top2[:, 0] - top2[:, 1]).min().item()
    print(f"{name}: generated {generated}, smallest top-2 logit margin {margin:.4f}, {len(names)} tensors")


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(4)
    for name, (model_type, overrides) in CASES.items():
        make_case(out_dir, name, model_type, overrides)


if __name__ == "__main__":
    main()
