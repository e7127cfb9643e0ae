"""`openai`: chat completions with structured outputs (`response_format` json_schema, strict) through the official
`openai` SDK; `base_url` makes it any OpenAI-compatible server (vLLM, Ollama, a LiteLLM proxy).

Billed by the answer's usage: `input_tokens` (prompt tokens) and `output_tokens` (completion tokens), split evenly
over the records of a packed prompt.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from pydantic import Field

from streams.enrich import openai_connection, provider_index
from streams.enrich.base import EnrichFailure, EnrichOutcome
from streams.enrich.model_prices import token_prices
from streams.enrich.openai_connection import OpenAIClientProvider, OpenAIConnection
from streams.enrich.pricing import PriceList
from streams.enrich.prompting import ChatPromptConfig, PromptedProvider, Reply

PRICES_READ_ON = "2026-12-01"
PRICES_SOURCE = "https://openai.com/api/pricing/"
USD_PER_MILLION_TOKENS: dict[str, tuple[float, ...]] = {
    # model (and its dated snapshots): (input, output) USD per million tokens, standard tier
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o4-mini": (1.10, 4.40),
}
CONTENT_FILTER_CODES = frozenset({"content_filter", "content_policy_violation"})


class OpenAIChatConfig(ChatPromptConfig, OpenAIConnection):
    model: str = Field("gpt-4o-mini", description="Chat model, as the server names it.")
    temperature: float | None = Field(0.0, ge=0, le=2, description="Sampling temperature; null for the default.")
    max_output_tokens: int | None = Field(
        None, ge=1, description="Most tokens per answer (`max_completion_tokens`); default the model's."
    )


class OpenAIChat:
    """One structured exchange with the Chat Completions API (the `Chat` of `prompting`)."""

    def __init__(self, provider: OpenAIChatProvider) -> None:
        self._provider = provider
        self._config = provider.config
        self._deadline = time.monotonic() + provider.config.timeout_seconds

    def _time_left(self) -> float:
        """The SDK's timeout for the next request: what is left of the call's deadline, so a correction does not
        outlive the stage's timeout and a slow answer is the SDK's timeout (transient), not a cancelled call."""
        return max(0.001, self._deadline - time.monotonic())

    def _opening(self, prompt: str) -> list[ChatCompletionMessageParam]:
        messages: list[ChatCompletionMessageParam] = []
        if self._config.system:
            messages.append({"role": "system", "content": self._config.system})
        messages.append({"role": "user", "content": prompt})
        return messages

    async def ask(self, prompt: str, schema: Mapping[str, Any]) -> Reply:
        return await self._send(self._opening(prompt), schema)

    async def correct(self, prompt: str, schema: Mapping[str, Any], previous: Reply, correction: str) -> Reply:
        messages = self._opening(prompt)
        messages.append({"role": "assistant", "content": str(previous.turn or "")})
        messages.append({"role": "user", "content": correction})
        return await self._send(messages, schema)

    async def _send(self, messages: list[ChatCompletionMessageParam], schema: Mapping[str, Any]) -> Reply:
        extra: dict[str, Any] = {}
        if self._config.temperature is not None:
            extra["temperature"] = self._config.temperature
        if self._config.max_output_tokens is not None:
            extra["max_completion_tokens"] = self._config.max_output_tokens
        name = self._provider.name
        body = {
            "model": self._config.model,
            "messages": messages,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "enrichment", "schema": dict(schema), "strict": True},
            },
            **extra,
        }
        try:
            async with openai_connection.mapped_errors(name):
                # The client's own `post` (the SDK's documented way to call any endpoint) rather than
                # `chat.completions.create`: create() walks its typed parameters on every call (1.4 ms of CPU each,
                # measured), which caps one worker below the calls a concurrency of 64 allows. The answer is still
                # parsed into the SDK's `ChatCompletion` and errors are the SDK's.
                completion = await self._provider.api.post(
                    "/chat/completions", body=body, cast_to=ChatCompletion, options={"timeout": self._time_left()}
                )
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            if exc.code in CONTENT_FILTER_CODES:
                return Reply(failure=EnrichFailure("Refused", f"{name}: {exc.message}"))
            return Reply(failure=EnrichFailure("BadRequest", f"{name} rejected the request: {exc.message}"))
        return _reply(completion)


def _reply(completion: ChatCompletion) -> Reply:
    billed: dict[str, float] = {}
    if completion.usage is not None:
        billed = {"input_tokens": completion.usage.prompt_tokens, "output_tokens": completion.usage.completion_tokens}
    if not completion.choices:
        return Reply(problem="the answer has no choices", billed=billed)
    choice = completion.choices[0]
    if choice.message.refusal:
        return Reply(failure=EnrichFailure("Refused", choice.message.refusal[:1000]), billed=billed)
    if choice.finish_reason == "content_filter":
        return Reply(failure=EnrichFailure("Refused", "the answer was withheld by the content filter"), billed=billed)
    content = choice.message.content or ""
    if choice.finish_reason == "length":
        return Reply(problem="the answer was cut off at the token limit", billed=billed, turn=content)
    try:
        answer = json.loads(content)
    except json.JSONDecodeError as exc:
        return Reply(problem=f"the answer is not JSON ({exc.msg})", billed=billed, turn=content)
    return Reply(answer=answer, billed=billed, turn=content)


class OpenAIChatProvider(PromptedProvider, OpenAIClientProvider):
    name = "openai"
    remote = True
    max_batch = 100
    default_max_chars = 20_000
    config: OpenAIChatConfig

    @property
    def model(self) -> str:
        return self.config.model

    def price_list(self) -> PriceList:
        return token_prices(self.config.model, USD_PER_MILLION_TOKENS, PRICES_READ_ON, PRICES_SOURCE)

    async def enrich(self, batch: Sequence[Mapping[str, Any]]) -> list[EnrichOutcome]:
        return await self.prompt.run(batch, OpenAIChat(self))


provider_index.register(OpenAIChatProvider.name, OpenAIChatConfig, OpenAIChatProvider)
