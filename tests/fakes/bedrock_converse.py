"""bedrock-runtime's REST-JSON bodies for tests on pytest-httpserver: a Converse answer through a tool (with usage),
a guardrail's intervention, an error as Bedrock sends it (`x-amzn-ErrorType` header, `{"message": ...}` body), and
the deterministic answer to a Converse request (its tool's `inputSchema.json` filled from the first user message, as
`openai_compatible.answer` does)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from werkzeug import Response

from tests.fakes.openai_compatible import answer, tokens

CONVERSE = re.compile(r"^/model/(?P<model>[^/]+)/converse$")
COUNT_TOKENS = re.compile(r"^/model/(?P<model>[^/]+)/count-tokens$")


def converse(
    tool_input: Mapping[str, Any] | None,
    *,
    tool_name: str = "record_answer",
    text: str | None = None,
    stop_reason: str = "tool_use",
    input_tokens: int = 60,
    output_tokens: int = 12,
) -> dict[str, Any]:
    """A ConverseResponse: `output.message.content` with optional text, then a `toolUse` block carrying
    `tool_input`; `stopReason`; `usage`; `metrics`."""
    content: list[dict[str, Any]] = []
    if text is not None:
        content.append({"text": text})
    if tool_input is not None:
        digest = hashlib.sha1(json.dumps(tool_input, sort_keys=True).encode()).hexdigest()[:22]
        content.append({"toolUse": {"toolUseId": f"tooluse_{digest}", "name": tool_name, "input": dict(tool_input)}})
    usage = {"inputTokens": input_tokens, "outputTokens": output_tokens, "totalTokens": input_tokens + output_tokens}
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": usage,
        "metrics": {"latencyMs": 50},
    }


def guardrail_intervened(text: str = "Sorry, the model cannot answer this question.") -> dict[str, Any]:
    return converse(None, text=text, stop_reason="guardrail_intervened", output_tokens=0)


def error(code: str, status: int, message: str) -> Response:
    """An error answer as bedrock-runtime sends it; botocore reads the code from `x-amzn-ErrorType`."""
    return Response(
        json.dumps({"message": message}),
        status=status,
        headers={"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"},
        content_type="application/json",
    )


def first_user_text(request: Mapping[str, Any]) -> str:
    for turn in request.get("messages", []):
        if turn.get("role") == "user":
            return "".join(block.get("text", "") for block in turn.get("content", []))
    return ""


def answer_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """The answer a Converse request gets: its (first) tool called with the answer derived from the prompt."""
    spec = request["toolConfig"]["tools"][0]["toolSpec"]
    filled = answer(spec["inputSchema"]["json"], first_user_text(request))
    sent, answered = tokens(json.dumps(request)), tokens(json.dumps(filled))
    return converse(filled, tool_name=spec["name"], input_tokens=sent, output_tokens=answered)


def count_tokens(request: Mapping[str, Any]) -> dict[str, Any]:
    """A CountTokensResponse: `{"inputTokens": n}`."""
    return {"inputTokens": tokens(json.dumps(request))}
