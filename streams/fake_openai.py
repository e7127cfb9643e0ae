"""An OpenAI-compatible service for the offline demo (`headwater up`), the benchmark and the tests; shipped in the
package so an installed `headwater up` can start it, and re-exported as `tests.fakes.openai_compatible`.

(a) Pure functions building the documented response bodies (a chat completion with usage, embeddings, an error)
and deterministic answers derived from the prompt: whatever JSON schema a request sends, `answer` fills it from the
prompt's words (`complaint` when a text says "unhappy" or "refund", an urgency that grows with "urgent"/"asap"...),
one item per `<record index="i">` section when the schema asks for packed `items`.

(b) A standalone aiohttp server, `python -m streams.fake_openai --port P [--latency-ms 50]`, answering
`POST /v1/chat/completions`, `POST /v1/embeddings` and `GET /v1/models`, with `GET /_requests` (the request log,
newest last; `DELETE /_requests` clears it) and `POST /_fault` (`{"status": 503, "count": 10, "retry_after": 1}`:
the next `count` API calls get that error) so a demo or benchmark can show throttling and outages.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import re
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

RECORD_SECTION = re.compile(r'<record index="(\d+)">\n(.*?)\n</record>', re.DOTALL)
MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "text-embedding-3-small")
EMBEDDING_DIMENSIONS = 8

_KEYWORDS: dict[str, tuple[str, ...]] = {
    "complaint": ("unhappy", "refund", "angry", "broken", "disappointed", "cancel"),
    "purchase": ("buy", "order", "purchase", "quote", "pricing", "upgrade"),
    "question": ("?", "how", "what", "when", "question"),
    "positive": ("great", "love", "happy", "thanks"),
    "negative": ("unhappy", "bad", "terrible", "refund"),
}
_URGENT = ("urgent", "asap", "immediately", "today", "refund", "unhappy", "!")


def tokens(text: str) -> int:
    """About four characters a token, as the services' own rule of thumb."""
    return len(text) // 4 + 1


def _pick(enum: Sequence[Any], text: str) -> Any:
    lowered = text.lower()
    for value, words in _KEYWORDS.items():
        if value in enum and any(word in lowered for word in words):
            return value
    return "question" if "question" in enum else enum[0]


def _value(schema: Mapping[str, Any], text: str) -> Any:
    if "enum" in schema:
        return _pick(schema["enum"], text)
    kind = schema.get("type")
    if kind in ("integer", "number"):
        low, high = schema.get("minimum", 0), schema.get("maximum", 10)
        hits = sum(text.lower().count(word) for word in _URGENT)
        number = min(high, low + hits)
        return int(number) if kind == "integer" else float(number)
    if kind == "boolean":
        return any(word in text.lower() for word in _URGENT)
    if kind == "array":
        return re.findall(r"[a-z]{5,}", text.lower())[:3]
    return text.strip()[:40]


def answer_object(schema: Mapping[str, Any], text: str) -> dict[str, Any]:
    """An object filling every property of `schema` from `text`."""
    properties: Mapping[str, Any] = schema.get("properties", {})
    return {name: _value(prop, text) for name, prop in properties.items()}


def is_packed(schema: Mapping[str, Any]) -> bool:
    items = schema.get("properties", {}).get("items", {})
    return items.get("type") == "array" and "index" in items.get("items", {}).get("properties", {})


def answer(schema: Mapping[str, Any], prompt: str) -> dict[str, Any]:
    """The deterministic answer to `prompt` in `schema`: one object, or `{"items": [...]}` per record section."""
    if not is_packed(schema):
        return answer_object(schema, prompt)
    item_schema = schema["properties"]["items"]["items"]
    items = []
    for index, text in RECORD_SECTION.findall(prompt):
        item = answer_object(item_schema, text)
        item["index"] = int(index)
        items.append(item)
    return {"items": items}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_completion(
    content: str | None,
    *,
    model: str = "gpt-4o-mini",
    prompt_tokens: int = 50,
    completion_tokens: int = 10,
    refusal: str | None = None,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    """A `chat.completion` body as the Chat Completions API documents it."""
    return {
        "id": "chatcmpl-" + hashlib.sha1(f"{content}{refusal}".encode()).hexdigest()[:24],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_headwater",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def vector(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A unit vector derived from the text's hash: equal texts, equal vectors."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = [digest[i % len(digest)] - 127.5 for i in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [round(x / norm, 6) for x in raw]


def embeddings(
    inputs: Sequence[str], *, model: str = "text-embedding-3-small", dimensions: int = EMBEDDING_DIMENSIONS
) -> dict[str, Any]:
    """An embeddings `list` body: one `embedding` object per input, in order, with usage."""
    prompt_tokens = sum(tokens(text) for text in inputs)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": vector(text, dimensions)}
            for index, text in enumerate(inputs)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def error(message: str, *, kind: str = "server_error", code: str | None = None) -> dict[str, Any]:
    """An API error body: `{"error": {"message", "type", "param", "code"}}`."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _first_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in messages:
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))
    return ""


def chat_answer(request: Mapping[str, Any]) -> dict[str, Any]:
    """The completion a chat request gets: structured when it sends a json_schema `response_format`; the first
    user message is the prompt (later turns are corrections of an earlier answer)."""
    messages: Sequence[Mapping[str, Any]] = request.get("messages", [])
    prompt = _first_user_text(messages)
    response_format = request.get("response_format") or {}
    schema = response_format.get("json_schema", {}).get("schema")
    content = json.dumps(answer(schema, prompt)) if schema else prompt.strip()[:80]
    sent = "".join(str(message.get("content", "")) for message in messages)
    return chat_completion(
        content, model=request.get("model", MODELS[0]), prompt_tokens=tokens(sent), completion_tokens=tokens(content)
    )


def embeddings_answer(request: Mapping[str, Any]) -> dict[str, Any]:
    inputs = request.get("input", [])
    texts = [inputs] if isinstance(inputs, str) else list(inputs)
    return embeddings(
        texts,
        model=request.get("model", "text-embedding-3-small"),
        dimensions=int(request.get("dimensions") or EMBEDDING_DIMENSIONS),
    )


def models() -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "headwater"} for name in MODELS],
    }


def _json(body: Mapping[str, Any]) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), content_type="application/json")


class FakeOpenAI:
    """The server's state: latency, the bounded request log, and injected faults."""

    def __init__(self, latency_ms: float = 0.0, log_size: int = 10_000) -> None:
        self.latency = latency_ms / 1000
        self.requests: deque[dict[str, Any]] = deque(maxlen=log_size)
        self.calls = 0
        self._fault: dict[str, Any] = {}

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/_requests", self._log)
        app.router.add_delete("/_requests", self._clear)
        app.router.add_post("/_fault", self._set_fault)
        return app

    async def _api(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        body = json.loads(await request.read())
        self.calls += 1
        self.requests.append({"path": request.path, "body": body})
        if self.latency:
            await asyncio.sleep(self.latency)
        if self._fault.get("count", 0) > 0:
            self._fault["count"] -= 1
            status = int(self._fault.get("status", 503))
            headers = {"retry-after": str(self._fault["retry_after"])} if "retry_after" in self._fault else {}
            kind = "rate_limit_exceeded" if status == 429 else "server_error"
            return body, web.json_response(error(f"injected {status}", kind=kind), status=status, headers=headers)
        return body, None

    async def _chat(self, request: web.Request) -> web.Response:
        body, failed = await self._api(request)
        return failed or _json(chat_answer(body))

    async def _embeddings(self, request: web.Request) -> web.Response:
        body, failed = await self._api(request)
        return failed or _json(embeddings_answer(body))

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(models())

    async def _log(self, request: web.Request) -> web.Response:
        return web.json_response({"calls": self.calls, "requests": list(self.requests)})

    async def _clear(self, request: web.Request) -> web.Response:
        self.requests.clear()
        self.calls = 0
        return web.json_response({"cleared": True})

    async def _set_fault(self, request: web.Request) -> web.Response:
        self._fault = dict(await request.json())
        return web.json_response(self._fault)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="How long each API call takes to answer.")
    args = parser.parse_args(argv)
    print(f"event=fake_openai_listening url=http://{args.host}:{args.port}/v1 latency_ms={args.latency_ms}", flush=True)
    web.run_app(FakeOpenAI(args.latency_ms).app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
