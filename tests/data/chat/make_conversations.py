#!/usr/bin/env python3
"""Writes tests/data/chat/conversations/*.json, the conversations the chat-template tests render
through every template (ours against @huggingface/jinja). Each file is
{"messages": [...], "tools": [...] (optional)}. Rerun after editing; the output is committed."""
import json
import os

here = os.path.dirname(os.path.abspath(__file__))
out_dir = os.path.join(here, "conversations")

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Zürich"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "default": 5}},
            "required": ["query"],
        },
    },
}


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def system(text):
    return {"role": "system", "content": text}


def call(name, arguments, id_="call_1"):
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": arguments}}


def calls(content, *tool_calls):
    return {"role": "assistant", "content": content, "tool_calls": list(tool_calls)}


def tool(text, id_="call_1", name=None):
    m = {"role": "tool", "tool_call_id": id_, "content": text}
    if name:
        m["name"] = name
    return m


def parts(*texts):
    return [{"type": "text", "text": t} for t in texts]


LONG = " ".join(f"Sentence {i} of a long document, with some words to fill the line." for i in range(400))

cases = {
    "single-user": [user("Hello!")],
    "system-user": [system("You are terse."), user("Hi")],
    "multi-turn": [user("What is 2+2?"), assistant("4."), user("And 3+3?")],
    "multi-turn-system": [system("Be kind."), user("a"), assistant("b"), user("c"), assistant("d"), user("e")],
    "ends-with-assistant": [user("Tell me a joke"), assistant("Why did the chicken cross the road?")],
    "whitespace-edges": [user("  What is 2+2?\n"), assistant("\n 4 \n"), user("\tok\t")],
    "spaced-system": [system("  spaced  "), user("x"), assistant("y"), user("z")],
    "japanese": [user("日本語で答えて 🙂"), assistant("はい。"), user("ありがとう")],
    "arabic-hebrew": [user("مرحبا بالعالم"), assistant("שלום עולם"), user("ok")],
    "emoji-combining": [user("e\u0301 👩‍👩‍👧 🇨🇭 \u200b zero-width"), assistant("ß → SS? İ ı")],
    "cyrillic-greek-system": [system("Отвечай по-русски."), user("Καλημέρα κόσμε")],
    "long-content": [system("Summarise."), user(LONG)],
    "long-multi-turn": [user(LONG[:3000]), assistant(LONG[3000:6000]), user(LONG[6000:9000])],
    "template-like-text": [user("{{ not_a_variable }} {% if x %} {# comment #} <|im_start|> [INST]")],
    "quotes-backslashes": [user('She said "hi" and \\n is not a newline; \'single\' too. C:\\path\\file')],
    "control-characters": [user("tab\there\rcarriage\u0001\u001f\u007fdel")],
    "json-in-content": [user('{"a": [1, 2, {"b": null}], "c": "d"}')],
    "code-block": [user("Write code:\n```py\nprint(1)\n```"), assistant("```py\nprint(2)\n```"), user("More")],
    "empty-content": [user("")],
    "empty-assistant": [user("x"), assistant(""), user("y")],
    "parts-single": [{"role": "user", "content": parts("Describe this.")}],
    "parts-multiple": [{"role": "user", "content": parts("First part. ", "Second part.")}],
    "parts-system-and-user": [{"role": "system", "content": parts("System in parts.")},
                              {"role": "user", "content": parts("User in parts.")}],
    "parts-with-image": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown?"}]}],
    "parts-multi-turn": [{"role": "user", "content": parts("q1")}, {"role": "assistant", "content": parts("a1")},
                         {"role": "user", "content": parts("q2")}],
    "thinking-last": [user("Think first."), assistant("<think>\nLet me think.\n</think>\n\nThe answer is 42.")],
    "thinking-history": [user("q1"), assistant("<think>\nreasoning one\n</think>\n\nanswer one"), user("q2")],
    "thinking-both": [user("q1"), assistant("<think>r1</think>a1"), user("q2"), assistant("<think>\n\nr2\n\n</think>\n\na2")],
    "reasoning-content-field": [user("q"), {"role": "assistant", "content": "final", "reasoning_content": "hidden steps"}],
    "thinking-no-close": [user("q"), assistant("<think> unfinished thought without end")],
    "tools-defined": {"messages": [user("Weather in Paris?")], "tools": [WEATHER]},
    "tools-defined-system": {"messages": [system("Use tools."), user("Weather in Paris?")], "tools": [WEATHER, SEARCH]},
    "tool-call-object-args": {"messages": [user("Weather in Paris?"),
                                           calls("", call("get_weather", {"city": "Paris", "unit": "celsius"}))],
                              "tools": [WEATHER]},
    "tool-call-string-args": {"messages": [user("Weather in Paris?"),
                                           calls("", call("get_weather", '{"city": "Paris"}'))],
                              "tools": [WEATHER]},
    "tool-call-null-content-string-args": [user("Weather in Oslo?"),
                                           calls(None, call("get_weather", '{"city": "Oslo"}')),
                                           tool('{"temp": -3}'), assistant("It is -3 degrees.")],
    "tool-call-with-text": {"messages": [user("Weather?"),
                                         calls("Let me check.", call("get_weather", {"city": "Zürich"}))],
                            "tools": [WEATHER]},
    "tool-result-and-answer": {"messages": [user("Weather in Rome?"),
                                            calls("", call("get_weather", {"city": "Rome"})),
                                            tool('{"temperature": 21.5, "unit": "celsius"}', name="get_weather"),
                                            assistant("It is 21.5 °C in Rome.")],
                               "tools": [WEATHER]},
    "multiple-tool-calls": {"messages": [user("Weather in Rome and Oslo?"),
                                         calls("", call("get_weather", {"city": "Rome"}, "c1"),
                                               call("get_weather", {"city": "Oslo"}, "c2")),
                                         tool("sunny", "c1"), tool("snow", "c2"), user("Thanks")],
                            "tools": [WEATHER]},
    "multiple-tool-calls-strings": [user("Two searches"),
                                    calls(None, call("search", '{"query": "a"}', "c1"), call("search", '{"query": "b"}', "c2")),
                                    tool("result a", "c1"), tool("result b", "c2")],
    "tool-args-numbers": {"messages": [user("numbers"),
                                       calls("", call("search", {"query": "x", "limit": 10, "ratio": 0.5, "big": 1e21,
                                                                 "small": 1e-7, "neg": -2.25, "whole": 3.0,
                                                                 "flags": [True, False, None]}))],
                          "tools": [SEARCH]},
    "tool-args-unicode": {"messages": [user("unicode"),
                                       calls("", call("search", {"query": "Zürich café 日本 \"quoted\" \\ back", "ключ": "значение"}))],
                          "tools": [SEARCH]},
    "tool-args-nested": {"messages": [user("nested"),
                                      calls("", call("search", {"query": "q", "filters": {"site": ["a.com", "b.org"], "range": {"from": 1, "to": 2}}, "empty": {}, "none": []}))],
                         "tools": [SEARCH]},
    "tool-result-json": [user("q"), calls(None, call("search", '{"query": "q"}')),
                         tool('{"results": [{"title": "T", "url": "https://x.y"}]}'), assistant("Found T.")],
    "tool-response-like-user": [user("<tool_response>\nfake\n</tool_response>"), assistant("ok"), user("real question")],
    "tools-empty-list": {"messages": [user("No tools here")], "tools": []},
    "tools-multi-turn": {"messages": [system("sys"), user("q1"), assistant("a1"), user("q2"),
                                      calls("", call("search", {"query": "q2"})), tool("r"), assistant("a2"), user("q3")],
                         "tools": [SEARCH]},
    "two-systems": [system("first"), system("second"), user("hi")],
    "system-only": [system("Only a system prompt.")],
    "starts-with-assistant": [assistant("I speak first."), user("ok")],
    "two-users-in-a-row": [user("one"), user("two")],
    "two-assistants-in-a-row": [user("q"), assistant("a"), assistant("b")],
    "empty-conversation": [],
    "unknown-role": [{"role": "narrator", "content": "Once upon a time"}, user("go on")],
    "content-null-user": [{"role": "user", "content": None}],
    "content-number": [{"role": "user", "content": 42}],
    "extra-fields": [{"role": "user", "content": "hi", "name": "alice", "metadata": {"k": 1}}],
    "system-in-middle": [user("q"), assistant("a"), system("new instructions"), user("q2")],
}

os.makedirs(out_dir, exist_ok=True)
for old in os.listdir(out_dir):
    os.remove(os.path.join(out_dir, old))
for i, (name, value) in enumerate(cases.items()):
    conversation = value if isinstance(value, dict) else {"messages": value}
    with open(os.path.join(out_dir, f"{i:02d}-{name}.json"), "w", encoding="utf-8") as f:
        json.dump(conversation, f, ensure_ascii=False, indent=1)
        f.write("\n")
print(f"{len(cases)} conversations in {out_dir}")
