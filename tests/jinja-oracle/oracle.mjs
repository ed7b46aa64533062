// The reference tpc's chat templates are checked against: @huggingface/jinja, the interpreter
// transformers.js renders chat templates with, given the variables transformers passes.
//   node oracle.mjs render < cases.jsonl
// Each input line is {"dir", "messages", "tools", "add_generation_prompt"}: `dir` holds
// tokenizer_config.json and/or chat_template.jinja (which wins, as in transformers). Each
// output line is {"text": prompt} or {"error": message}.
import { existsSync, readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import path from "node:path";
import { Template } from "@huggingface/jinja";

const loaded = new Map();
function load(dir) {
  if (loaded.has(dir)) return loaded.get(dir);
  const configPath = path.join(dir, "tokenizer_config.json");
  const config = existsSync(configPath) ? JSON.parse(readFileSync(configPath, "utf8")) : {};
  let source = config.chat_template;
  if (Array.isArray(source)) {
    const named = source.find((t) => t.name === "default") ?? source[0];
    source = named?.template;
  }
  const jinjaPath = path.join(dir, "chat_template.jinja");
  if (existsSync(jinjaPath)) source = readFileSync(jinjaPath, "utf8");
  // Special tokens as strings, AddedToken objects by their content; null ones are not passed.
  const tokens = {};
  for (const key of ["bos_token", "eos_token", "unk_token", "pad_token"]) {
    const v = config[key];
    if (typeof v === "string") tokens[key] = v;
    else if (v && typeof v === "object") tokens[key] = v.content ?? "";
  }
  let entry;
  try {
    entry = { template: new Template(source), tokens };
  } catch (e) {
    entry = { error: String(e?.message ?? e) };
  }
  loaded.set(dir, entry);
  return entry;
}

const [mode] = process.argv.slice(2);
if (mode !== "render") {
  console.error("usage: node oracle.mjs render < cases.jsonl");
  process.exit(2);
}
const out = [];
for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  if (!line.length) continue;
  const c = JSON.parse(line);
  const entry = load(c.dir);
  if (entry.error) {
    out.push(JSON.stringify({ error: entry.error }));
    continue;
  }
  try {
    const text = entry.template.render({
      messages: c.messages,
      add_generation_prompt: c.add_generation_prompt,
      tools: c.tools ?? null,
      documents: null,
      ...entry.tokens,
    });
    out.push(JSON.stringify({ text }));
  } catch (e) {
    out.push(JSON.stringify({ error: String(e?.message ?? e) }));
  }
}
process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
