"""The router through the unmodified OpenAI Python SDK: run by tests/sdk.rs (see README.md here).

    python openai_sdk.py --port PORT [PHASE ...]      (the client key in $LLM_ROUTER_SDK_KEY)

Runs each PHASE given, or, with none, reads phase names from stdin one per line (tests/sdk.rs sets the
mocks' behaviour before each). For every case it prints one JSON line to stdout:
`{"phase", "case", "provider", "ok": true, ...what the SDK parsed}` or `{..., "ok": false, "exception":
{...}, "raw": <the response's bytes>}`; a phase ends with `{"phase": PHASE, "done": true}`. The first line
is `{"sdk": <openai.__version__>}`. The assertions are in tests/sdk.rs; this script only reports.

The client validates every response and every stream chunk against the SDK's own types
(`_strict_response_validation=True`: a field of the wrong type or a missing required field is an
`APIResponseValidationError`, where the default client would build the object anyway); /v1/models is
also read with the default client. It does not retry (`max_retries=0`), so each error is the router's
own. Its transport is httpx2's (the SDK's HTTP library), with a tap that keeps a copy of the response
bytes as the SDK reads them (to check the `[DONE]` and to show what failed to parse).
"""

import argparse
import json
import os
import sys
import traceback
import zlib

import httpx2
import openai
from openai import OpenAI

PROVIDERS = ("oai", "ant", "gem")
MODEL = "test/m"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
# Strict, so that `chat.completions.stream()` may parse its arguments (it refuses non-strict tools).
TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Looks x up.",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {"x": {"type": "integer"}},
            "required": ["x"],
            "additionalProperties": False,
        },
    },
}


def only(provider):
    """OpenRouter's provider preferences: this provider and no other."""
    return {"provider": {"order": [provider], "allow_fallbacks": False}}


class Tap(httpx2.BaseTransport):
    """httpx2's transport, keeping a copy of the last response's body bytes as they are read."""

    def __init__(self):
        self.inner = httpx2.HTTPTransport()
        self.body = bytearray()
        self.encoding = ""

    def handle_request(self, request):
        response = self.inner.handle_request(request)
        self.body = bytearray()
        self.encoding = response.headers.get("content-encoding", "")
        tap, stream = self, response.stream

        class Recorded(httpx2.SyncByteStream):
            def __iter__(self):
                for chunk in stream:
                    tap.body += chunk
                    yield chunk

            def close(self):
                stream.close()

        return httpx2.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=Recorded(),
            extensions=response.extensions,
        )

    def close(self):
        self.inner.close()

    def text(self):
        """The body read so far, decoded as the SDK sees it."""
        body = bytes(self.body)
        try:
            if self.encoding == "gzip":
                body = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(body)
            elif self.encoding == "deflate":
                body = zlib.decompress(body)
        except zlib.error:
            pass
        return body.decode("utf-8", "replace")


def client(port, key, tap, strict=True):
    return OpenAI(
        api_key=key,
        base_url=f"http://127.0.0.1:{port}/v1",
        max_retries=0,
        timeout=20.0,
        http_client=openai.DefaultHttpxClient(transport=tap),
        _strict_response_validation=strict,
    )


def extra(model):
    """The fields the SDK's type does not declare (OpenRouter's additions), as a dict."""
    return dict(model.model_extra or {}) if model is not None else None


def usage_of(usage):
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "cost": extra(usage).get("cost"),
    }


def calls_of(tool_calls):
    return [
        {"id": c.id, "type": c.type, "name": c.function.name, "arguments": c.function.arguments}
        for c in tool_calls or []
    ]


def completion(sdk, tap, provider, **kwargs):
    """One non-streamed completion: what the SDK parsed."""
    resp = sdk.chat.completions.create(model=MODEL, messages=MESSAGES, extra_body=only(provider), **kwargs)
    choice = resp.choices[0]
    return {
        "type": type(resp).__name__,
        "id": resp.id,
        "object": resp.object,
        "model": resp.model,
        "created_is_int": isinstance(resp.created, int),
        "provider_name": extra(resp).get("provider"),
        "choices": len(resp.choices),
        "role": choice.message.role,
        "content": choice.message.content,
        "tool_calls": calls_of(choice.message.tool_calls),
        "finish_reason": choice.finish_reason,
        "native_finish_reason": extra(choice).get("native_finish_reason"),
        "usage": usage_of(resp.usage),
    }


# What the running case has got so far: a stream's text before an exception ended it.
PARTIAL = {}


def stream(sdk, tap, provider, **kwargs):
    """One streamed completion, every chunk parsed by the SDK: the text, tool calls and usage rebuilt."""
    text, finishes, usages, ids, models, calls = [], [], [], set(), set(), {}
    chunks = 0
    with sdk.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, extra_body=only(provider), **kwargs
    ) as events:
        for chunk in events:
            chunks += 1
            PARTIAL.update(chunks=chunks)
            ids.add(chunk.id)
            models.add(chunk.model)
            assert chunk.object == "chat.completion.chunk", chunk.object
            if chunk.usage is not None:
                usages.append({**usage_of(chunk.usage), "choices": len(chunk.choices), "chunk": chunks})
            for choice in chunk.choices:
                if choice.delta.content:
                    text.append(choice.delta.content)
                    PARTIAL.update(text="".join(text))
                for d in choice.delta.tool_calls or []:
                    call = calls.setdefault(d.index, {"id": None, "type": None, "name": "", "arguments": ""})
                    call["id"] = d.id or call["id"]
                    call["type"] = d.type or call["type"]
                    if d.function is not None:
                        call["name"] += d.function.name or ""
                        call["arguments"] += d.function.arguments or ""
                if choice.finish_reason is not None:
                    finishes.append(choice.finish_reason)
        # The iterator ended without an exception: on `[DONE]`, or at the body's end without one (the SDK
        # takes both); the tap tells which.
        closed = events.response.is_closed
    raw = tap.text()
    return {
        "chunks": chunks,
        "text": "".join(text),
        "tool_calls": [calls[i] for i in sorted(calls)],
        "finish_reasons": finishes,
        "usages": usages,
        "ids": len(ids),
        "models": sorted(models),
        "closed": closed,
        "done_last": raw.rstrip("\r\n").endswith("data: [DONE]"),
    }


def stream_helper(sdk, tap, provider):
    """`chat.completions.stream()`: the SDK's own accumulation of the chunks, with the tool's arguments
    parsed (the tool is strict) and the final completion rebuilt."""
    kinds = []
    with sdk.chat.completions.stream(
        model=MODEL, messages=MESSAGES, tools=[TOOL], extra_body=only(provider)
    ) as events:
        for event in events:
            if event.type not in kinds:
                kinds.append(event.type)
        final = events.get_final_completion()
    choice = final.choices[0]
    return {
        "events": kinds,
        "content": choice.message.content,
        "tool_calls": calls_of(choice.message.tool_calls),
        "parsed_arguments": [c.function.parsed_arguments for c in choice.message.tool_calls or []],
        "finish_reason": choice.finish_reason,
        "usage": usage_of(final.usage),
    }


def models(sdk, tap, provider):
    page = sdk.models.list()
    return {"ids": [m.id for m in page.data], "object": [m.object for m in page.data]}


def describe(exc):
    """An exception as JSON: its class (and whether it is one of the SDK's API errors) and contents."""
    out = {
        "type": type(exc).__name__,
        "module": type(exc).__module__,
        "api_error": isinstance(exc, openai.APIError),
        "status_error": isinstance(exc, openai.APIStatusError),
        "message": getattr(exc, "message", None) or str(exc),
    }
    if isinstance(exc, openai.APIError):
        out["body"] = exc.body if isinstance(exc.body, (dict, list, str, type(None))) else repr(exc.body)
        out["code"] = exc.code
        out["error_type"] = exc.type
    if isinstance(exc, openai.APIStatusError):
        out["status"] = exc.status_code
    if exc.__cause__ is not None:
        out["cause"] = f"{type(exc.__cause__).__name__}: {exc.__cause__}"
    return out


def run(phase, name, provider, fn, sdk, tap):
    """Runs one case; prints what it returned, or the exception it raised and the response's bytes."""
    line = {"phase": phase, "case": name, "provider": provider}
    PARTIAL.clear()
    try:
        line.update(ok=True, **fn(sdk, tap, provider))
    except Exception as exc:  # every failure is reported, and judged in tests/sdk.rs
        traceback.print_exc(file=sys.stderr)
        line.update(ok=False, exception=describe(exc), partial=dict(PARTIAL), raw=tap.text())
    print(json.dumps(line, sort_keys=True), flush=True)


def phase_ok(sdk, tap, port):
    """Healthy mocks: completions, streams, tools, the SDK's stream helper, /v1/models, refusals."""
    for p in PROVIDERS:
        run("ok", "completion", p, completion, sdk, tap)
        run("ok", "stream", p, stream, sdk, tap)
        run("ok", "tools", p, lambda s, t, p: completion(s, t, p, tools=[TOOL]), sdk, tap)
        run("ok", "tools_stream", p, lambda s, t, p: stream(s, t, p, tools=[TOOL]), sdk, tap)
        run("ok", "stream_helper", p, stream_helper, sdk, tap)
    run("ok", "models_strict", None, models, sdk, tap)
    run("ok", "models", None, models, client(port, sdk.api_key, tap, strict=False), tap)
    # `n: 2` cannot go to Anthropic's API: with only Anthropic allowed, the router refuses it.
    run("ok", "refused", "ant", lambda s, t, p: completion(s, t, p, n=2), sdk, tap)
    run("ok", "refused_stream", "ant", lambda s, t, p: stream(s, t, p, n=2), sdk, tap)
    wrong = client(port, "sk-not-a-key-of-this-router", tap)
    run("ok", "wrong_key", "oai", completion, wrong, tap)


def phase_failing(phase, cases):
    """Every provider fails as tests/sdk.rs set its mock: these cases for each."""

    def go(sdk, tap, port):
        for p in PROVIDERS:
            for name, fn in cases:
                run(phase, name, p, fn, sdk, tap)

    return go


PHASES = {
    "ok": phase_ok,
    # The mocks' streams fail after some content (non-streamed requests would be answered).
    "mid_stream_error": phase_failing("mid_stream_error", [("stream", stream)]),
    # The mocks' streams fail before any content.
    "early_stream_error": phase_failing("early_stream_error", [("stream", stream)]),
    # The mocks answer an error status.
    "provider_status": phase_failing("provider_status", [("completion", completion), ("stream", stream)]),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("phases", nargs="*", help=", ".join(PHASES))
    args = ap.parse_args()
    key = os.environ.get("LLM_ROUTER_SDK_KEY") or sys.exit("LLM_ROUTER_SDK_KEY is not set")
    tap = Tap()
    sdk = client(args.port, key, tap)
    print(json.dumps({"sdk": openai.__version__}), flush=True)
    phases = args.phases or (line.strip() for line in sys.stdin)
    for phase in phases:
        if phase not in PHASES:
            sys.exit(f"unknown phase {phase!r}")
        PHASES[phase](sdk, tap, args.port)
        print(json.dumps({"phase": phase, "done": True}), flush=True)


if __name__ == "__main__":
    main()
