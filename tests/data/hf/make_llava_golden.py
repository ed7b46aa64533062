#!/usr/bin/env python3
"""Golden data from Hugging Face transformers for the LLaVA (llava-1.5 layout) agreement tests.

    python3 tests/data/hf/make_llava_golden.py OUT_DIR

For each case: a tiny random-init fp32 LlavaForConditionalGeneration (a 2-layer CLIP vision
tower, a llama text model) built by transformers itself and saved with save_pretrained, plus
  golden.json   {"case", "prompt_ids" (image token already expanded), "image_positions",
                 "generated_ids", "tensor_names", "transformers", "torch"}
  pixel_values.npy  float32 [1, 3, S, S] fed straight to the model (no image processor)
  prefill_logits.npy float32 [prompt length, vocab]: the logits at every prompt position
  logits.npy    float32 [new tokens, vocab], as tests/data/hf/make_golden.py writes it
and, in OUT_DIR/images/, the test images with the pixel values that transformers'
CLIPImageProcessor makes of them under the first case's preprocessor_config.json
(IMAGE.pixels.npy, float32 [3, 32, 32], from use_fast=False; IMAGE.torchvision.npy from the
torchvision-based class, to show whether the two differ; IMAGE.rgb.npy, what Pillow decoded).
tests/data/images holds the images, images.json and the .pixels.npy files (the torchvision ones
were identical). Eight tower heads, so that every world up to 8 splits them.
Runs on the CPU in fp32 with eager attention, so the reference has no TF32 or kernel choice in it.
"""
import json
import os
import struct
import sys
import traceback

import torch
import transformers

IMAGE_TOKEN = 250
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=8,
              num_channels=3, image_size=32, patch_size=8, hidden_act="quick_gelu",
              layer_norm_eps=1e-5, projection_dim=16)
TEXT = dict(model_type="llama", vocab_size=256, hidden_size=64, intermediate_size=128,
            num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
            max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=10000.0,
            initializer_range=0.08, bos_token_id=1, eos_token_id=None, pad_token_id=None,
            tie_word_embeddings=False)
CASES = {
    # The llava-1.5 layout: the second-to-last hidden state, CLS dropped, biased projector.
    "llava-tiny": dict(vision_feature_layer=-2, vision_feature_select_strategy="default",
                       multimodal_projector_bias=True, image_seq_length=16),
    # The last hidden state with CLS kept ("full"), projector without bias.
    "llava-tiny-full": dict(vision_feature_layer=-1, vision_feature_select_strategy="full",
                            multimodal_projector_bias=False, image_seq_length=17),
}
NEW_TOKENS = 4


def save_npy(path, tensor):
    # .npy v1.0 by hand (numpy may be absent): little-endian float32, C order.
    data = tensor.detach().contiguous().to(torch.float32)
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
            if "norm" in name and name.endswith(".weight"):
                p.add_(0.1 * torch.randn(p.shape, generator=generator))
            elif name.endswith(".bias") or "class_embedding" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))


def make_case(out_dir, name, overrides):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration
    torch.manual_seed(1234)
    text = dict(TEXT)
    text.pop("model_type")
    config = LlavaConfig(vision_config=CLIPVisionConfig(**VISION), text_config=LlamaConfig(**text),
                         image_token_index=IMAGE_TOKEN, projector_hidden_act="gelu", **overrides)
    model = LlavaForConditionalGeneration(config).to(torch.float32).eval()
    model.set_attn_implementation("eager")
    perturb_norms_and_biases(model, torch.Generator().manual_seed(99))
    path = os.path.join(out_dir, name)
    model.save_pretrained(path, safe_serialization=True)
    n = overrides["image_seq_length"]
    prompt = [1, 17, 42] + [IMAGE_TOKEN] * n + [99, 3, 201, 7]
    ids = torch.tensor([prompt])
    pixels = torch.randn((1, 3, VISION["image_size"], VISION["image_size"]), generator=torch.Generator().manual_seed(7))
    save_npy(os.path.join(path, "pixel_values.npy"), pixels)
    with torch.no_grad():
        prefill = model(input_ids=ids, pixel_values=pixels).logits[0]
        out = model.generate(input_ids=ids, pixel_values=pixels, do_sample=False, max_new_tokens=NEW_TOKENS,
                             min_new_tokens=NEW_TOKENS, output_logits=True, return_dict_in_generate=True,
                             eos_token_id=None, pad_token_id=0)
    save_npy(os.path.join(path, "prefill_logits.npy"), prefill)
    generated = out.sequences[0, len(prompt):].tolist()
    logits = torch.stack([l[0] for l in out.logits]).to(torch.float32)
    save_npy(os.path.join(path, "logits.npy"), logits)
    from safetensors import safe_open
    with safe_open(os.path.join(path, "model.safetensors"), "pt") as f:
        names = sorted(f.keys())
    golden = {"case": name, "prompt_ids": prompt, "image_positions": [3 + i for i in range(n)],
              "generated_ids": generated, "transformers": transformers.__version__, "torch": torch.__version__,
              "tensor_names": names,
              "prefill_vs_generate_max_diff": (prefill[-1] - logits[0]).abs().max().item()}
    with open(os.path.join(path, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
    print(f"{name}: generated {generated}, {len(names)} tensors, first {names[:3]}, last {names[-3:]}")


def make_images(out_dir):
    # Smooth patterns with some texture, so a resize has something to get wrong.
    from PIL import Image
    img_dir = os.path.join(out_dir, "images")
    os.makedirs(img_dir, exist_ok=True)
    g = torch.Generator().manual_seed(5)

    def pattern(w, h, channels):
        ys = torch.arange(h).float().view(h, 1, 1)
        xs = torch.arange(w).float().view(1, w, 1)
        c = torch.arange(channels).float().view(1, 1, channels)
        v = 127 + 90 * torch.sin(xs * (0.3 + 0.1 * c)) * torch.cos(ys * (0.2 + 0.05 * c)) \
            + 20 * torch.randn((h, w, channels), generator=g)
        return v.clamp(0, 255).round().to(torch.uint8).numpy()

    files = []
    Image.fromarray(pattern(32, 32, 3), "RGB").save(os.path.join(img_dir, "exact-32x32.png"))
    files.append("exact-32x32.png")
    Image.fromarray(pattern(57, 41, 3), "RGB").save(os.path.join(img_dir, "wide-57x41.jpg"), quality=90)
    files.append("wide-57x41.jpg")
    Image.fromarray(pattern(19, 27, 4), "RGBA").save(os.path.join(img_dir, "small-rgba-19x27.png"))
    files.append("small-rgba-19x27.png")
    Image.fromarray(pattern(40, 70, 1)[:, :, 0], "L").save(os.path.join(img_dir, "gray-40x70.jpg"), quality=85)
    files.append("gray-40x70.jpg")
    return img_dir, files


def preprocess_images(out_dir, model_dir):
    from PIL import Image
    img_dir, files = make_images(out_dir)
    from transformers import CLIPImageProcessor
    proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    proc.save_pretrained(model_dir)
    report = {"files": files, "processors": {}}
    kinds = [("pixels", lambda: CLIPImageProcessor.from_pretrained(model_dir, use_fast=False))]
    try:
        from transformers import CLIPImageProcessorFast
        kinds.append(("torchvision", lambda: CLIPImageProcessorFast.from_pretrained(model_dir)))
    except Exception as e:
        report["torchvision_error"] = repr(e)
    for kind, make in kinds:
        try:
            p = make()
            report["processors"][kind] = type(p).__name__
            for f in files:
                image = Image.open(os.path.join(img_dir, f))
                pv = p(images=image, return_tensors="pt")["pixel_values"]
                save_npy(os.path.join(img_dir, f"{f}.{kind}.npy"), pv[0])
        except Exception:
            report[f"{kind}_error"] = traceback.format_exc()
    # What PIL decoded, so a decoder difference can be told from a resize difference.
    for f in files:
        arr = torch.from_numpy(__import__("numpy").asarray(Image.open(os.path.join(img_dir, f)).convert("RGB")).copy())
        save_npy(os.path.join(img_dir, f"{f}.rgb.npy"), arr.float())
    import PIL
    report["pillow"] = PIL.__version__
    with open(os.path.join(img_dir, "images.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report, indent=1)[:3000])


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(4)
    for name, overrides in CASES.items():
        make_case(out_dir, name, overrides)
    preprocess_images(out_dir, os.path.join(out_dir, "llava-tiny"))


if __name__ == "__main__":
    main()
