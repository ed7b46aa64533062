#!/usr/bin/env python3
"""Checks that Hugging Face transformers loads models written by `tpc make-model`.

For every model folder under MODELS_DIR: load it with AutoModelForCausalLM and report missing,
unexpected and mismatched keys (all must be empty), run one forward pass, and compare
transformers' parameter count with the one tpc wrote into `expected_parameters.txt`.
For config-only folders (real shapes too big to carry), build the model on the meta device
and compare parameter counts only.

Run on the GPU machine (its python3 has torch and transformers):
    python3 scripts/gpu/check_hf_load.py gpu-bundle/models
Exits non-zero if any model fails.
"""
import json
import os
import sys

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM


def count(model):
    return sum(p.numel() for p in model.parameters())


def check_full(path, expected):
    model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True, dtype=torch.float32)
    problems = {k: sorted(v) for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        logits = model(ids).logits
    finite = bool(torch.isfinite(logits).all())
    n = count(model)
    ok = not problems and finite and (expected is None or n == expected)
    return ok, {"parameters": n, "expected": expected, "loading_problems": problems,
                "logits_shape": list(logits.shape), "finite": finite}


def check_config_only(path, expected):
    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    n = count(model)
    return n == expected, {"parameters": n, "expected": expected, "architecture": type(model).__name__}


def main():
    root = sys.argv[1]
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    failures = 0
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        expected_file = os.path.join(path, "expected_parameters.txt")
        expected = int(open(expected_file).read()) if os.path.exists(expected_file) else None
        has_weights = any(f.endswith(".safetensors") for f in os.listdir(path))
        try:
            ok, report = check_full(path, expected) if has_weights else check_config_only(path, expected)
        except Exception as e:  # report and go on: one broken model must not hide the others
            ok, report = False, {"exception": repr(e)}
        failures += not ok
        print(("PASS " if ok else "FAIL ") + name + " " + json.dumps(report))
    print(f"{failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
