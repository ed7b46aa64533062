// OpenAI's official Node SDK against a running `tpexec serve`: chat and completions, streamed
// and not. Prints one JSON object of what it got; the C++ test (tests/http/ServeCliTest.cpp)
// compares. Usage: node client.mjs BASE_URL MODEL API_KEY
import OpenAI from 'openai';

const [baseURL, model, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60000 });

async function completionText(params) {
  const r = await client.completions.create({ model, ...params });
  return { text: r.choices[0].text, finish: r.choices[0].finish_reason, usage: r.usage };
}

async function streamedCompletionText(params) {
  const stream = await client.completions.create({
    model, ...params, stream: true, stream_options: { include_usage: true },
  });
  let text = '', finish = null, usage = null, chunks = 0;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
      ++chunks;
    }
  }
  return { text, finish, usage, chunks };
}

async function chatText(params) {
  const r = await client.chat.completions.create({ model, ...params });
  return { text: r.choices[0].message.content, finish: r.choices[0].finish_reason, usage: r.usage };
}

async function streamedChatText(params) {
  const stream = await client.chat.completions.create({
    model, ...params, stream: true, stream_options: { include_usage: true },
  });
  let text = '', finish = null, usage = null, chunks = 0;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta.content ?? '';
      if (c.finish_reason) finish = c.finish_reason;
      ++chunks;
    }
  }
  return { text, finish, usage, chunks };
}

const prompt = 'The capital of France is';
const messages = [
  { role: 'system', content: 'You answer in one word.' },
  { role: 'user', content: 'What is the capital of France?' },
];
const greedy = { max_tokens: 12, temperature: 0 };
const seeded = { max_tokens: 12, temperature: 1.0, top_p: 0.9, seed: 1234 };

const out = {
  models: (await client.models.list()).data.map((m) => m.id),
  completion: await completionText({ prompt, ...greedy }),
  completionStreamed: await streamedCompletionText({ prompt, ...greedy }),
  chat: await chatText({ messages, ...greedy }),
  chatStreamed: await streamedChatText({ messages, ...greedy }),
  seededA: await chatText({ messages, ...seeded }),
  seededB: await chatText({ messages, ...seeded }),
  seededStreamed: await streamedChatText({ messages, ...seeded }),
  stopped: await completionText({ prompt, ...greedy, stop: [' '] }),
};
try {
  await client.completions.create({ model, prompt, max_tokens: -1 });
  out.badRequest = { status: 200 };
} catch (e) {
  out.badRequest = { status: e.status, message: e.error?.message ?? e.message };
}
console.log(JSON.stringify(out));
