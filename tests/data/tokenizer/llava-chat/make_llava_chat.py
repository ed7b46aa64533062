#!/usr/bin/env python3
"""Writes tokenizer.json and tokenizer_config.json: a character-level BPE tokenizer of exactly 256
tokens (the vocab of tests/data/hf/llava-tiny, which ships none), so `tpexec serve` can render
chat messages with images for that model.

Ids 0..95 are the printable ASCII characters and the newline, one token each (no merges). Ids
250, 251 and 252 are the added tokens <image> (llava-tiny's image_token_index), <|im_start|> and
<|im_end|>. The other ids are single characters no prompt holds, so every id the model can
generate decodes. The chat template is ChatML whose messages may be lists of text and image
parts, as transformers' llava processors pass them: an image part renders <image>.
Deterministic: rerunning it rewrites the same files.
"""
import json
from pathlib import Path

SPECIALS = {250: "<image>", 251: "<|im_start|>", 252: "<|im_end|>"}
TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def main():
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {c: i for i, c in enumerate(chars)}
    for i in range(len(chars), 256):
        if i not in SPECIALS:
            vocab[chr(0x100 + i)] = i
    added = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i, t in sorted(SPECIALS.items())
    ]
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": None,
        "post_processor": None,
        "decoder": None,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "fuse_unk": False,
                  "byte_fallback": False, "ignore_merges": False, "vocab": vocab, "merges": []},
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "chat_template": TEMPLATE,
        "clean_up_tokenization_spaces": False,
    }
    here = Path(__file__).parent
    (here / "tokenizer.json").write_text(json.dumps(tokenizer, indent=1, ensure_ascii=False) + "\n")
    (here / "tokenizer_config.json").write_text(json.dumps(config, indent=1) + "\n")


if __name__ == "__main__":
    main()
