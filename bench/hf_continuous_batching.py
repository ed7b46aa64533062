#!/usr/bin/env python3
"""Offline throughput of Hugging Face transformers' own continuous batching, the peer of
`tpexec bench PLAN --requests N --input-len I --output-len O`.

Random-init model of CONFIG (a config.json) in bf16 on the GPU, `generate_batch` with
attn_implementation "paged|sdpa", N random prompts of I tokens, greedy, exactly O new tokens
each (no end-of-sequence id). Prints one JSON object: requests, seconds, requests/s, output and
total tokens/s.

  python3 bench/hf_continuous_batching.py CONFIG --requests 256 --input-len 1024 --output-len 128
"""
import argparse
import json
import sys
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.generation import GenerationConfig


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="a config.json (the model's shape)")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--input-len", type=int, default=1024)
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--attn", default="paged|sdpa")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    config = AutoConfig.from_pretrained(args.config)
    torch.manual_seed(args.seed)
    # Random weights made on the GPU: the shape is what matters for throughput.
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation=args.attn)
    model.eval()
    vocab = config.vocab_size
    generator = torch.Generator().manual_seed(args.seed)
    prompts = [torch.randint(0, vocab, (args.input_len,), generator=generator).tolist()
               for _ in range(args.requests)]
    generation = GenerationConfig(max_new_tokens=args.output_len, min_new_tokens=args.output_len,
                                  do_sample=False, eos_token_id=None, pad_token_id=0)
    # A short warm-up so the timed run does not pay for first-use compilation. No inference_mode
    # here: generate_batch runs its loop on a thread of its own, outside such a context.
    with torch.no_grad():
        model.generate_batch(prompts[:4], generation_config=generation, progress_bar=False)
        torch.cuda.synchronize()
        start = time.perf_counter()
        outputs = model.generate_batch(prompts, generation_config=generation, progress_bar=False)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    if not outputs or any(len(o.generated_tokens) == 0 for o in outputs.values()):
        sys.exit("generate_batch returned requests without tokens (see its log above)")
    generated = sum(len(o.generated_tokens) for o in outputs.values())
    total = generated + args.requests * args.input_len
    json.dump({"peer": "transformers generate_batch", "attn": args.attn, "requests": args.requests,
               "input_len": args.input_len, "output_len": args.output_len, "seconds": seconds,
               "requests_per_s": args.requests / seconds, "output_tokens_per_s": generated / seconds,
               "total_tokens_per_s": total / seconds, "generated_tokens": generated}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
