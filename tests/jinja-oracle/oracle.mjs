// The reference tpc's chat templates are checked against: @huggingface/jinja, the interpreter
// transformers.js renders chat templates with, given the variables transformers passes.
//   node oracle.mjs render < cases.jsonl
// Each input line is {"dir", "messages", "tools", "add_generation_prompt"}: `dir` holds
// tokenizer_config.json and/or chat_template.jinja (which wins, as in transformers). Each
// output line is {"text": prompt} or {"error": message}.
//   node oracle.mjs bench DIR CONVERSATION.json N   print microseconds per rendering of the
//                                                   parsed template, then per parse
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

const [mode, benchDir, benchFile, benchCount] = process.argv.slice(2);
function variables(tokens, messages, tools, addGenerationPrompt) {
  return { messages, add_generation_prompt: addGenerationPrompt, tools: tools ?? null, documents: null, ...tokens };
}
if (mode === "bench") {
  const conversation = JSON.parse(readFileSync(benchFile, "utf8"));
  const { tokens } = load(benchDir);
  const source = (() => {
    const c = JSON.parse(readFileSync(path.join(benchDir, "tokenizer_config.json"), "utf8"));
    return existsSync(path.join(benchDir, "chat_template.jinja"))
      ? readFileSync(path.join(benchDir, "chat_template.jinja"), "utf8")
      : Array.isArray(c.chat_template) ? (c.chat_template.find((t) => t.name === "default") ?? c.chat_template[0]).template : c.chat_template;
  })();
  const n = Number(benchCount);
  const parsed = new Template(source);
  const render = () => parsed.render(variables(tokens, conversation.messages, conversation.tools, true));
  const time = (f) => {
    for (let i = 0; i < Math.min(n, 200); ++i) f(); // warm the JIT
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; ++i) f();
    return (Number(process.hrtime.bigint() - start) / 1e3 / n).toFixed(2);
  };
  console.log(time(render), time(() => new Template(source)));
  process.exit(0);
}
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
    const text = entry.template.render(variables(entry.tokens, c.messages, c.tools, c.add_generation_prompt));
    out.push(JSON.stringify({ text }));
  } catch (e) {
    out.push(JSON.stringify({ error: String(e?.message ?? e) }));
  }
}
process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
