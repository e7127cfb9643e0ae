"""Anthropic Messages API bodies for tests on pytest-httpserver: a message answering through a tool (with usage),
a refusal, an error, the model list, and the deterministic answer to a request (its tool's `input_schema` filled from
the first user message, as `openai_compatible.answer` does)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from tests.fakes.openai_compatible import answer, tokens

MODEL = "claude-haiku-4-5-20251001"


def message(
    tool_input: Mapping[str, Any] | None,
    *,
    tool_name: str = "record_answer",
    text: str | None = None,
    stop_reason: str = "tool_use",
    input_tokens: int = 60,
    output_tokens: int = 12,
    model: str = MODEL,
) -> dict[str, Any]:
    """A `message` body: optional text, then a `tool_use` block carrying `tool_input`."""
    content: list[dict[str, Any]] = []
    if text is not None:
        content.append({"type": "text", "text": text})
    if tool_input is not None:
        digest = hashlib.sha1(json.dumps(tool_input, sort_keys=True).encode()).hexdigest()[:24]
        content.append({"type": "tool_use", "id": f"toolu_{digest}", "name": tool_name, "input": dict(tool_input)})
    return {
        "id": "msg_" + hashlib.sha1(json.dumps(content).encode()).hexdigest()[:24],
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def refusal(text: str = "I can't help with that.") -> dict[str, Any]:
    return message(None, text=text, stop_reason="refusal", output_tokens=8)


def error(kind: str, text: str) -> dict[str, Any]:
    """An error body: `{"type": "error", "error": {"type": "overloaded_error", "message": ...}}`."""
    return {"type": "error", "error": {"type": kind, "message": text}, "request_id": "req_headwater"}


def models() -> dict[str, Any]:
    data = [{"type": "model", "id": MODEL, "display_name": "Claude Haiku 4.5", "created_at": "2025-10-01T00:00:00Z"}]
    return {"data": data, "has_more": False, "first_id": MODEL, "last_id": MODEL}


def first_user_text(request: Mapping[str, Any]) -> str:
    for turn in request.get("messages", []):
        if turn.get("role") == "user":
            content = turn.get("content")
            if isinstance(content, str):
                return content
            return "".join(block.get("text", "") for block in content if block.get("type") == "text")
    return ""


def answer_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """The message a request gets: its (first) tool called with the answer derived from the prompt."""
    tool = request["tools"][0]
    prompt = first_user_text(request)
    filled = answer(tool["input_schema"], prompt)
    sent, answered = tokens(json.dumps(request)), tokens(json.dumps(filled))
    return message(filled, tool_name=tool["name"], input_tokens=sent, output_tokens=answered)
