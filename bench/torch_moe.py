#!/usr/bin/env python3
"""The PyTorch MoE layer tpc's MoE kernels (tpc_moe_bench) are measured against.

One sparse MoE block of the Qwen3-30B-A3B or Mixtral-8x7B shape as transformers implements it
(Qwen3MoeSparseMoeBlock / MixtralSparseMoeBlock: the router, softmax top-k, every touched expert's
gate/up, SwiGLU and down, the weighted sum), random bf16 weights on the GPU, called on
[tokens, hidden] inputs. Each call is timed with CUDA events over repeated calls after a warm-up;
where the block can be captured in a CUDA graph (no host round trip for its routing) the graph
replay is timed too, as tpc_moe_bench times its kernels. The shape comes from a config.json
(`tpc make-model --config-only` writes one), so both sides run the same layer.

transformers' experts backends are timed one after another (`--experts`: "eager" loops over the
touched experts, "grouped_mm" sorts the tokens by expert and runs torch._grouped_mm). Prints one
JSON line per backend and token count: {"experts": ..., "tokens": N, "eager_us": ...}, then the
graph timings ({"graph_us": ... or null, "graph_refused": why}).
  python3 bench/torch_moe.py CONFIG.json [--tokens 1,8,64,256] [--calls 50]
                             [--experts eager,grouped_mm]
"""
import argparse
import json

import torch


def moe_block(cfg):
    """The block and its config (whose experts implementation the block reads at each call)."""
    arch = (cfg.get("architectures") or [""])[0]
    if cfg.get("model_type") == "mixtral" or arch.startswith("Mixtral"):
        from transformers import MixtralConfig
        from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock
        config = MixtralConfig.from_dict(cfg)
        return MixtralSparseMoeBlock(config), config
    from transformers import Qwen3MoeConfig
    from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock
    config = Qwen3MoeConfig.from_dict(cfg)
    return Qwen3MoeSparseMoeBlock(config), config


def use_experts(config, name):
    """Selects transformers' experts backend ("eager", "grouped_mm", "batched_mm"); False where
    this transformers has no such switch."""
    try:
        config._experts_implementation = name
    except (AttributeError, TypeError, ValueError):
        return False
    return getattr(config, "_experts_implementation", None) == name


def time_eager(block, x, calls):
    for _ in range(3):
        block(x)
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(calls):
        block(x)
    end.record()
    torch.cuda.synchronize()
    return 1000.0 * begin.elapsed_time(end) / calls


def time_graph(block, x, calls):
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            block(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            for _ in range(calls):
                block(x)
    except Exception as error:  # data-dependent routing (nonzero, .item()) cannot be captured
        return None, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    graph.replay()
    torch.cuda.synchronize()
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    graph.replay()
    end.record()
    torch.cuda.synchronize()
    return 1000.0 * begin.elapsed_time(end) / calls, None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--tokens", default="1,8,64,256")
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--experts", default="eager,grouped_mm",
                        help="transformers experts backends to time, comma-separated")
    args = parser.parse_args()
    cfg = json.load(open(args.config))
    torch.manual_seed(0)
    with torch.device("cuda"):  # the experts' weights are made on the GPU, not initialised on the CPU
        block, config = moe_block(cfg)
        block = block.to(dtype=torch.bfloat16).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0.0, 0.02)
    hidden = cfg["hidden_size"]
    counts = [int(t) for t in args.tokens.split(",")]
    # Every input is made first: after a refused capture the CUDA generator cannot be used again.
    inputs = {t: torch.randn(1, t, hidden, device="cuda", dtype=torch.bfloat16) for t in counts}
    for experts in args.experts.split(","):
        if not use_experts(config, experts):
            print(json.dumps({"experts": experts, "error": "this transformers cannot select it"}))
            continue
        results = {}
        with torch.no_grad():
            for tokens in counts:
                results[tokens] = {"experts": experts, "tokens": tokens,
                                   "eager_us": round(time_eager(block, inputs[tokens], args.calls), 2)}
        for tokens in counts:
            print(json.dumps(results[tokens]), flush=True)
    # Graph capture last: a refused capture can leave the CUDA context unusable for what follows.
    with torch.no_grad():
        for experts in args.experts.split(","):
            if not use_experts(config, experts):
                continue
            for tokens in counts:
                graph, why = time_graph(block, inputs[tokens], args.calls)
                print(json.dumps({"experts": experts, "tokens": tokens,
                                  "graph_us": None if graph is None else round(graph, 2),
                                  **({"graph_refused": why} if why else {})}), flush=True)
                if graph is None:
                    return

if __name__ == "__main__":
    main()
