#!/usr/bin/env python3
"""Counts proxy-wasm crossings per request from an Envoy log at `--component-log-level wasm:trace`,
where Envoy writes one line per crossing: `[vm->host] env.proxy_…(…)` for a host call the filter makes,
`[host->vm] proxy_on_…(…)` for a callback Envoy makes into the VM (memory allocations for returned
data included). Each host call is charged to the callback it happens in, and through the callback's
context to a role: downstream (the listener filter), upstream (the filter in the provider cluster) or
logger (the router's upstream_log). Usage: hostcalls.py LOG FROM_BYTE TO_BYTE REQUESTS SCENARIO →
one JSON line."""
import json
import re
import sys
from collections import Counter, defaultdict

log, start, end, n, scenario = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
with open(log, "rb") as f:
    f.seek(start)
    text = f.read(end - start).decode("utf-8", "replace")

calls, callbacks = Counter(), Counter()
root_of = {}  # context id → root context id
stack = []  # open callbacks: (name, context id)
charged = defaultdict(Counter)  # context id → host calls made inside its callbacks
cb_by_ctx = defaultdict(Counter)  # context id → callbacks into it
events = re.finditer(r"\[(vm->host|host->vm|host<-vm)\] (?:env\.)?(proxy_[a-z_]+)(\(([^)]*)\)| return)", text)
for m in events:
    kind, name, args = m.group(1), m.group(2), m.group(4)
    if kind == "host<-vm":
        if stack and stack[-1][0] == name:
            stack.pop()
        continue
    if kind == "vm->host":
        calls[name] += 1
        if stack:
            charged[stack[-1][1]][name] += 1
        continue
    callbacks[name] += 1
    ids = [a.strip() for a in (args or "").split(",") if a.strip()]
    ctx = ids[0] if ids and name != "proxy_on_memory_allocate" else (stack[-1][1] if stack else None)
    if name == "proxy_on_context_create" and len(ids) > 1:
        root_of[ids[0]] = ids[1]
    cb_by_ctx[ctx][name] += 1
    stack.append((name, ctx))


def role(root):
    kids = [c for c, r in root_of.items() if r == root]
    if any(charged[c]["proxy_set_property"] and cb_by_ctx[c]["proxy_on_request_body"] for c in kids):
        return "downstream"
    if kids:
        return "upstream"
    return "logger" if cb_by_ctx[root]["proxy_on_log"] else "other"


roles = defaultdict(lambda: {"host_calls": 0, "callbacks": 0})
for ctx in set(charged) | set(cb_by_ctx):
    if ctx is None:
        continue
    r = role(root_of.get(ctx, ctx) if root_of.get(ctx, "0") != "0" else ctx)
    roles[r]["host_calls"] += sum(charged[ctx].values())
    roles[r]["callbacks"] += sum(cb_by_ctx[ctx].values())
per = lambda c: {k: round(v / n, 2) for k, v in sorted(c.items(), key=lambda kv: -kv[1])}
print(json.dumps({
    "scenario": scenario,
    "requests": n,
    "host_calls_per_request": round(sum(calls.values()) / n, 2),
    "callbacks_per_request": round(sum(callbacks.values()) / n, 2),
    "by_role": {r: {k: round(v / n, 2) for k, v in x.items()} for r, x in sorted(roles.items())},
    "host_calls": per(calls),
    "callbacks": per(callbacks),
}))
