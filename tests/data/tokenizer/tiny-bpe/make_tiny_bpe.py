#!/usr/bin/env python3
"""Writes tokenizer.json and tokenizer_config.json: a byte-level BPE tokenizer of exactly 500
tokens (the vocab of the `tiny` presets), so generated models print text.

256 byte tokens, 241 merges learned from the English text below, and 3 ChatML special tokens.
The pre-tokenizer and decoder are Llama-3's (split regex, then byte level), the chat template is
ChatML. Deterministic: rerunning it rewrites the same files.
"""
import json
import re
from collections import Counter
from pathlib import Path

TEXT = """
The compiler reads a checkpoint, builds one forward step of the model, shards it for a world of
ranks and writes a plan with one program per rank. The executor runs the plan on every rank: it
loads the weights of its own slice, keeps a cache of keys and values, and generates tokens one at
a time. Hello, world! This is a tiny model with random weights, so the text it writes is noise,
but the tokens are real tokens and the text is real text. What is the capital of France? It is
Paris. The quick brown fox jumps over the lazy dog. There are 12 ranks, 8 nodes and 1024 tokens.
Once upon a time there was a little robot who wanted to learn how to write stories. Every morning
it read a book, and every evening it wrote a page of its own. Some pages were good and some were
strange, but the robot kept writing, because writing is how you learn to write. The weather today
is sunny with a chance of rain in the afternoon. Please remember to bring an umbrella, a sandwich
and something to read on the train. Thank you for reading, and have a wonderful day!
"""
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = 241
SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
          " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def byte_alphabet():
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def main():
    alphabet = byte_alphabet()
    # Training only needs words; an ASCII approximation of the split pattern is enough here.
    words = Counter(
        tuple(alphabet[b] for b in w.encode()) for w in re.findall(r" ?[A-Za-z]+| ?[0-9]{1,3}| ?[^\sA-Za-z0-9]+|\s+", TEXT)
    )
    vocab = {alphabet[b]: b for b in range(256)}
    merges = []
    while len(merges) < MERGES:
        pairs = Counter()
        for word, n in words.items():
            for a, b in zip(word, word[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        vocab[best[0] + best[1]] = len(vocab)
        merged = Counter()
        for word, n in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    assert len(merges) == MERGES, "the text is too short for the merges asked for"
    added = [{"id": len(vocab) + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, s in enumerate(SPECIALS)]
    tokenizer = {
        "version": "1.0",
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": SPLIT}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    }
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None, "eos_token": "<|im_end|>",
              "chat_template": CHATML, "clean_up_tokenization_spaces": False}
    here = Path(__file__).parent
    (here / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (here / "tokenizer_config.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    print(f"wrote tokenizer.json: {len(vocab) + len(SPECIALS)} tokens, {len(merges)} merges")


if __name__ == "__main__":
    main()
