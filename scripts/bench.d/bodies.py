#!/usr/bin/env python3
"""Writes the request bodies of scripts/bench into DIR: chat-1k5.json (system + 3 turns + a tool
definition, about 1.5 KB), conv-100k.json (a 100 KB conversation), big-1m.json (a 1 MB request),
stream.json (chat-1k5 with "stream": true), stream-anthropic.json (the same for the model whose provider
speaks Anthropic's Messages API), slow.json (the same for the no-buffering check's model) and
demo-1k5.json (chat-1k5 for the demo catalog's model, for the run of scripts/run's configuration).
Deterministic: the same bytes on every machine."""
import json
import sys

MODEL = "bench-chat"
SLOW_MODEL = "bench-slow"
ANTHROPIC_MODEL = "bench-anthropic"
DEMO_MODEL = "llama-3.3-70b"

SYSTEM = ("You are a concise assistant for a travel company. Answer in plain English, quote prices in "
          "euros, and call a tool whenever live data (weather, flights, opening hours) is needed. ")
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather and a three-day forecast for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 3},
            },
            "required": ["city"],
        },
    },
}
PARA = ("We are planning a long weekend in Lisbon in early May with two children aged 7 and 11. "
        "We like museums, short walks, trams and seafood, and we would rather avoid long queues. "
        "Could you suggest a plan for each day, with rough costs and the best time to visit each place?\n")


def chat(target_len, turns_text=None, model=MODEL):
    msgs = [{"role": "system", "content": SYSTEM}]
    msgs += turns_text or [
        {"role": "user", "content": PARA},
        {"role": "assistant", "content": "Happy to help. Do you prefer a relaxed or a busy schedule, "
                                         "and is a day trip to Sintra of interest?"},
        {"role": "user", "content": "Relaxed, and yes to Sintra if the weather is good. What is the "
                                    "forecast for Lisbon?"},
    ]
    body = {"model": model, "messages": msgs, "tools": [TOOL], "temperature": 0.3, "max_tokens": 512}
    # Pad the first user turn so the body is target_len bytes exactly.
    text = json.dumps(body, separators=(",", ":"))
    pad = target_len - len(text)
    if pad > 0:
        filler = "Any tips for rainy days are welcome too, as are places where the children can run around. "
        msgs[1]["content"] += (filler * (pad // len(filler) + 1))[:pad]
        text = json.dumps(body, separators=(",", ":"))
    return body, text


def conversation(target_len):
    turns = []
    i = 0
    body, text = chat(0, [{"role": "user", "content": PARA}])
    while len(text) < target_len - 3000:
        role = "user" if i % 2 == 0 else "assistant"
        content = (PARA * 6) if role == "user" else ("Day %d: " % i) + (
            "Morning at the Gulbenkian museum, lunch in Belem (about 60 euros for four), "
            "tram 28 in the late afternoon when queues are short.\n" * 8)
        turns.append({"role": role, "content": content})
        i += 1
        body, text = chat(0, turns + [{"role": "user", "content": "And the forecast?"}])
    return chat(target_len, turns + [{"role": "user", "content": "And the forecast?"}])


def main():
    out = sys.argv[1]
    files = {}
    b, t = chat(1536)
    files["chat-1k5.json"] = t
    files["stream.json"] = json.dumps(dict(b, stream=True), separators=(",", ":"))
    files["stream-anthropic.json"] = json.dumps(dict(b, stream=True, model=ANTHROPIC_MODEL), separators=(",", ":"))
    files["slow.json"] = json.dumps(dict(b, stream=True, model=SLOW_MODEL), separators=(",", ":"))
    files["demo-1k5.json"] = chat(1536, model=DEMO_MODEL)[1]
    files["conv-100k.json"] = conversation(100 * 1024)[1]
    files["big-1m.json"] = conversation(1024 * 1024)[1]
    for name, text in files.items():
        with open(f"{out}/{name}", "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
