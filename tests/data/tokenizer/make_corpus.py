#!/usr/bin/env python3
"""Writes corpus.jsonl: the strings tpc's tokenizer must encode exactly as the JavaScript oracle.

One JSON string per line. Deterministic (fixed seed), so rerunning it rewrites the same file.
The strings mix scripts and languages, emoji (with ZWJ sequences, skin tones, flags), long and
mixed whitespace runs, digits, code, contractions in any case, decomposed accents (NFC matters),
and special tokens of all three families inside running text, whole and cut in half.
"""
import json
import random
from pathlib import Path

FRAGMENTS = {
    "english": [
        "The quick brown fox jumps over the lazy dog.", "It's a truth universally acknowledged",
        "I'M NOT SURE WE'LL MAKE IT, BUT THEY'VE SAID WE'D TRY.", "don't", "You're", "she'd've",
        "Hello, world!", "tensor-parallel inference across eight ranks", "e.g. (see Fig. 3)",
        "What's the capital of France?", "   leading spaces", "trailing spaces   ", "O'Neil's",
        "mixed CASE Words and ACRONYMS like NCCL, GPU, HTTP/2", "state-of-the-art", "well...",
    ],
    "european": [
        "Größe, Übermaß und Straße", "Ça va? Très bien, merci.", "¿Dónde está la biblioteca?",
        "Zażółć gęślą jaźń", "Příliš žluťoučký kůň úpěl ďábelské ódy", "Åsa æder ørred",
        "Ελληνικά: Καλημέρα κόσμε", "Съешь же ещё этих мягких французских булок",
        "Árvíztűrő tükörfúrógép", "İstanbul'da ılık bir gün", "Ðoàn kết là sức mạnh",
    ],
    "asian": [
        "你好，世界！今天天气很好。", "机器学习模型的张量并行推理", "日本語のテキスト、カタカナとひらがな。",
        "東京タワーは333メートルです", "한국어 문장입니다. 안녕하세요!", "ภาษาไทยไม่มีช่องว่างระหว่างคำ",
        "हिन्दी में एक वाक्य।", "বাংলা ভাষা", "தமிழ் மொழி", "Tiếng Việt có dấu: Phở bò rất ngon",
        "中文English混合text", "ｆｕｌｌｗｉｄｔｈ　ｓｐａｃｅ", "ラーメン🍜を食べた",
    ],
    "rtl": ["مرحبا بالعالم", "اللغة العربية جميلة ١٢٣", "שלום עולם", "עברית עם ניקוד: שָׁלוֹם"],
    "emoji": [
        "🙂", "😀😃😄", "🎉 party 🎉", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇯🇵🇺🇸", "❤️", "🏳️‍🌈", "🤖→🧠",
        "✨✨✨", "🔥x100", "☕️ & 🍰", "🧑🏿‍💻 coding",
    ],
    "digits": [
        "3.14159265358979", "1234567890", "42", "007", "1,000,000", "2026-11-24T01:30:00Z",
        "+1 (555) 123-4567", "0xDEADBEEF", "1e-9", "99.9%", "٣٤٥", "१२३", "①②③", "Ⅻ",
    ],
    "code": [
        "def f(x):\n    return x * 2\n", "int main() { return 0; }",
        "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
        '{"key": "value", "n": [1, 2, 3]}', "SELECT * FROM users WHERE id = 7;",
        "if x != None and y >= 3: pass", "#include <vector>\nstd::vector<int> v{1,2,3};",
        "console.log(`template ${x}`);", "a->b; c::d; e && f || !g", "$ ls -la | grep '\\.cpp$'",
        "<div class=\"x\">&amp;</div>", "    indented\n        more\n", "x = y ** 2 // 3 % 4",
    ],
    "whitespace": [
        " ", "  ", "\t", "\n", "\n\n", "\r\n", "   \n   ", " \t \t ", "\n\n\n\n\n\n",
        " " * 17, "\t" * 9, "\u00a0", "\u3000", "\u2003", "  \n\t\r\n  ", "\u200b", "\ufeff",
    ],
    "special": [
        "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>",
        "<|end_header_id|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>",
        "<unk>", "[INST]", "[/INST]", "<think>", "</think>", "<|im_sta", "<|eot_", "<s", "</s",
        "<|reserved_special_token_5|>", "<tool_call>",
    ],
    "decomposed": [
        "cafe\u0301", "e\u0301le\u0300ve", "n\u0303", "A\u030a", "\u1100\u1161\u11a8",
        "Vie\u0302\u0323t", "o\u0308\u0304",
    ],
}
SEPARATORS = [" ", "", "\n", "  ", "\t", ", ", "\n\n", " - ", "   ", "\r\n"]


def main():
    rng = random.Random(20261124)
    corpus = []
    # Every fragment alone, and in each of a few simple frames.
    for group in FRAGMENTS.values():
        for f in group:
            corpus += [f, " " + f, f + " ", "x" + f + "y", f + f]
    # Random mixtures: 1 to 8 fragments from any groups, random separators.
    groups = list(FRAGMENTS)
    while len(corpus) < 2400:
        parts = []
        for _ in range(rng.randint(1, 8)):
            parts.append(rng.choice(FRAGMENTS[rng.choice(groups)]))
            parts.append(rng.choice(SEPARATORS))
        corpus.append("".join(parts[:-1] if rng.random() < 0.5 else parts))
    # Long runs and long words, where BPE does the most merging.
    for n in (50, 200, 1000):
        corpus += [" " * n, "a" * n, "\n" * n, "ab " * n, "9" * n, "😀" * (n // 10), "中" * n]
    corpus.append("")
    path = Path(__file__).with_name("corpus.jsonl")
    path.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in corpus), encoding="utf-8")
    print(f"wrote {path.name}: {len(corpus)} strings")


if __name__ == "__main__":
    main()
