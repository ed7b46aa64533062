#!/usr/bin/env python3
"""The PyTorch decode loop tpc's CUDA backend is measured against.

A Llama-shaped decoder with random bf16 weights, written the way a careful PyTorch user would:
a static KV cache, torch.nn.functional.scaled_dot_product_attention, and the whole decode step
(every layer, the LM head and the argmax) captured in one CUDA graph and replayed. The shape comes
from a config.json (`tpc make-model --config-only` writes one), so both sides run the same shape.
With --compile the step first goes through torch.compile (Inductor, its default mode, which
leaves CUDA graphs to us) and the compiled step is captured in the same one CUDA graph.

Prints one JSON line: {"decode_ms_per_step": ..., ...}.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F


def rms_norm(x, weight, eps):
    variance = x.float().pow(2).mean(-1, keepdim=True)
    return (x.float() * torch.rsqrt(variance + eps)).to(x.dtype) * weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Decoder:
    def __init__(self, cfg, batch, max_context, device):
        self.hidden = cfg["hidden_size"]
        self.heads = cfg["num_attention_heads"]
        self.kv_heads = cfg.get("num_key_value_heads", self.heads)
        self.head_dim = cfg.get("head_dim") or self.hidden // self.heads
        self.inter = cfg["intermediate_size"]
        self.vocab = cfg["vocab_size"]
        self.layers = cfg["num_hidden_layers"]
        self.eps = cfg.get("rms_norm_eps", 1e-5)
        theta = cfg.get("rope_theta") or (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0)
        dt = torch.bfloat16
        g = torch.Generator(device=device).manual_seed(0)

        def w(*shape):
            return (torch.rand(*shape, generator=g, device=device, dtype=torch.float32) - 0.5).mul_(
                2.0 / shape[-1] ** 0.5).to(dt)

        q_out, kv_out = self.heads * self.head_dim, self.kv_heads * self.head_dim
        self.embed = w(self.vocab, self.hidden)
        self.lm_head = w(self.vocab, self.hidden)
        self.final_norm = torch.ones(self.hidden, device=device, dtype=dt)
        self.blocks = []
        for _ in range(self.layers):
            self.blocks.append(dict(
                ln1=torch.ones(self.hidden, device=device, dtype=dt),
                ln2=torch.ones(self.hidden, device=device, dtype=dt),
                # q, k and v in one GEMM and gate/up in one, as fused serving stacks do.
                qkv=w(q_out + 2 * kv_out, self.hidden),
                o=w(self.hidden, q_out),
                gate_up=w(2 * self.inter, self.hidden),
                down=w(self.hidden, self.inter)))
        self.k_cache = torch.zeros(self.layers, batch, self.kv_heads, max_context, self.head_dim,
                                   device=device, dtype=dt)
        self.v_cache = torch.zeros_like(self.k_cache)
        inv = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, device=device).float() / self.head_dim))
        self.inv_freq = inv
        self.max_context = max_context
        self.context_index = torch.arange(max_context, device=device)

    def step(self, tokens, position):
        """tokens [batch] int64, position: 0-d int64 tensor (same for the whole batch)."""
        b = tokens.shape[0]
        x = self.embed[tokens]  # [b, hidden]
        freqs = position.float() * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        # Positions past the current one are masked; the cache is static, so shapes never change.
        mask = (self.context_index <= position).view(1, 1, 1, -1)
        q_out, kv_out = self.heads * self.head_dim, self.kv_heads * self.head_dim
        for i, blk in enumerate(self.blocks):
            h = rms_norm(x, blk["ln1"], self.eps)
            qkv = h @ blk["qkv"].t()
            q, k, v = qkv.split([q_out, kv_out, kv_out], dim=-1)
            q = q.view(b, self.heads, 1, self.head_dim)
            k = k.view(b, self.kv_heads, 1, self.head_dim)
            v = v.view(b, self.kv_heads, 1, self.head_dim)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            self.k_cache[i].index_copy_(2, position.view(1), k)
            self.v_cache[i].index_copy_(2, position.view(1), v)
            attn = F.scaled_dot_product_attention(q, self.k_cache[i], self.v_cache[i], attn_mask=mask,
                                                  enable_gqa=self.kv_heads != self.heads)
            x = x + attn.reshape(b, q_out) @ blk["o"].t()
            h = rms_norm(x, blk["ln2"], self.eps)
            gate, up = (h @ blk["gate_up"].t()).chunk(2, dim=-1)
            x = x + (F.silu(gate) * up) @ blk["down"].t()
        logits = rms_norm(x, self.final_norm, self.eps) @ self.lm_head.t()
        return logits.argmax(dim=-1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="config.json of the shape to run")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prompt-len", type=int, default=512, help="decode starts at this position")
    ap.add_argument("--gen", type=int, default=128, help="timed decode steps")
    ap.add_argument("--compile", action="store_true", help="torch.compile the step before capture")
    args = ap.parse_args()
    cfg = json.load(open(args.config))
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    max_context = args.prompt_len + args.gen + 8
    model = Decoder(cfg, args.batch, max_context, device)
    tokens = torch.zeros(args.batch, dtype=torch.long, device=device)
    position = torch.tensor(args.prompt_len, dtype=torch.long, device=device)
    step = torch.compile(model.step) if args.compile else model.step

    with torch.no_grad():
        compile_start = time.perf_counter()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):  # warm-up before capture, as torch.cuda.graphs asks (and compiles)
                out = step(tokens, position)
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()
        warmup_s = time.perf_counter() - compile_start
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = step(tokens, position)
        for _ in range(3):
            graph.replay()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.gen):
            graph.replay()
            # Like a serving loop: the host learns each step's tokens before the next.
            tokens.copy_(out)
            position.add_(1)
            out.cpu()
        torch.cuda.synchronize()
        ms = (time.perf_counter() - start) * 1e3 / args.gen
    print(json.dumps({"decode_ms_per_step": ms, "batch": args.batch, "prompt_len": args.prompt_len,
                      "gen": args.gen, "compiled": args.compile, "warmup_s": round(warmup_s, 1),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
