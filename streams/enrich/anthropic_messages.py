"""`anthropic`: the Messages API through the official `anthropic` SDK, the answer structured through one tool whose
`input_schema` is the outputs' JSON schema, forced with `tool_choice: {"type": "tool"}`.

Billed by the answer's usage: `input_tokens` and `output_tokens`, split evenly over the records of a packed prompt.
429 and 529 (overloaded) are throttles, other 5xx transient; `stop_reason: refusal` fails the records asked.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import anthropic
from anthropic.types import Message, MessageParam, ToolUseBlock
from pydantic import Field, SecretStr

from streams.enrich import provider_index
from streams.enrich.base import (
    EnrichFailure,
    EnrichOutcome,
    ProviderStartError,
    TransientError,
)
from streams.enrich.http_status import service_error
from streams.enrich.model_prices import token_prices
from streams.enrich.pricing import PriceList
from streams.enrich.prompting import ChatPromptConfig, PromptedProvider, Reply
from streams.enrich.sdk_client import SdkClientProvider

log = logging.getLogger(__name__)

API_KEY_ENV = "ANTHROPIC_API_KEY"
PRICES_READ_ON = "2026-12-01"
PRICES_SOURCE = "https://www.anthropic.com/pricing#api"
USD_PER_MILLION_TOKENS: dict[str, tuple[float, ...]] = {
    # model alias (and its dated snapshots): (input, output) USD per million tokens
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-haiku": (0.25, 1.25),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-opus-4-5": (5.00, 25.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-opus-4": (15.00, 75.00),
}


class AnthropicConfig(ChatPromptConfig):
    model: str = Field("claude-haiku-4-5", description="Claude model or alias.")
    base_url: str | None = Field(None, description="Another API root (a proxy, a test fake); default Anthropic's.")
    api_key: SecretStr | None = Field(None, description=f"API key; default the environment's {API_KEY_ENV}.")
    max_tokens: int = Field(1024, ge=1, description="Most tokens per answer (the API requires a bound).")
    tool_name: str = Field(
        "record_answer", pattern=r"^[a-zA-Z0-9_-]{1,64}$", description="Name of the tool the answer is given through."
    )


class AnthropicChat:
    """One structured exchange with the Messages API (the `Chat` of `prompting`)."""

    def __init__(self, provider: AnthropicProvider) -> None:
        self._provider = provider
        self._config = provider.config
        self._deadline = time.monotonic() + provider.config.timeout_seconds

    def _time_left(self) -> float:
        """The SDK's timeout for the next request: what is left of the call's deadline, so a correction does not
        outlive the stage's timeout and a slow answer is the SDK's timeout (transient), not a cancelled call."""
        return max(0.001, self._deadline - time.monotonic())

    async def ask(self, prompt: str, schema: Mapping[str, Any]) -> Reply:
        return await self._send([{"role": "user", "content": prompt}], schema)

    async def correct(self, prompt: str, schema: Mapping[str, Any], previous: Reply, correction: str) -> Reply:
        messages: list[MessageParam] = [{"role": "user", "content": prompt}]
        if isinstance(previous.turn, ToolUseBlock):
            block = previous.turn
            messages.append(
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}],
                }
            )
            messages.append(
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": block.id, "content": correction, "is_error": True}
                    ],
                }
            )
        else:
            messages.append({"role": "assistant", "content": str(previous.turn or "(no answer)")})
            messages.append({"role": "user", "content": correction})
        return await self._send(messages, schema)

    async def _send(self, messages: list[MessageParam], schema: Mapping[str, Any]) -> Reply:
        config, name = self._config, self._provider.name
        extra: dict[str, Any] = {}
        if config.system:
            extra["system"] = config.system
        try:
            message = await self._provider.api.messages.create(
                model=config.model,
                max_tokens=config.max_tokens,
                messages=messages,
                tools=[
                    {
                        "name": config.tool_name,
                        "description": "Record the answer, matching the input schema exactly.",
                        "input_schema": dict(schema),
                    }
                ],
                tool_choice={"type": "tool", "name": config.tool_name},
                timeout=self._time_left(),
                **extra,
            )
        except anthropic.APIConnectionError as exc:  # APITimeoutError included
            raise TransientError(f"{name}: {type(exc).__name__}: {exc.message}") from exc
        except anthropic.APIStatusError as exc:
            mapped = service_error(name, exc.status_code, exc.message, exc.response.headers)
            if mapped is not None:
                raise mapped from exc
            return Reply(failure=EnrichFailure("BadRequest", f"{name} rejected the request: {exc.message}"))
        return self._reply(message)

    def _reply(self, message: Message) -> Reply:
        billed = {"input_tokens": message.usage.input_tokens, "output_tokens": message.usage.output_tokens}
        if message.stop_reason == "refusal":
            said = " ".join(block.text for block in message.content if block.type == "text")
            return Reply(failure=EnrichFailure("Refused", said[:1000] or "the model declined to answer"), billed=billed)
        for block in message.content:
            if isinstance(block, ToolUseBlock) and block.name == self._config.tool_name:
                return Reply(answer=block.input, billed=billed, turn=block)
        said = " ".join(block.text for block in message.content if block.type == "text")
        return Reply(problem=f"the answer did not use the tool {self._config.tool_name}", billed=billed, turn=said)


class AnthropicProvider(PromptedProvider, SdkClientProvider[anthropic.AsyncAnthropic]):
    name = "anthropic"
    remote = True
    max_batch = 100
    default_max_chars = 20_000
    config: AnthropicConfig

    @property
    def model(self) -> str:
        return self.config.model

    def price_list(self) -> PriceList:
        return token_prices(self.config.model, USD_PER_MILLION_TOKENS, PRICES_READ_ON, PRICES_SOURCE)

    def open_client(self) -> anthropic.AsyncAnthropic:
        key = self.config.api_key.get_secret_value() if self.config.api_key else os.environ.get(API_KEY_ENV)
        if not key:
            raise ProviderStartError(f"{self.name}: no API key (set api_key or {API_KEY_ENV})")
        return anthropic.AsyncAnthropic(
            api_key=key,
            base_url=self.config.base_url,
            max_retries=0,
            timeout=self.config.timeout_seconds,
            http_client=anthropic.DefaultAioHttpClient(),  # cheaper per call than httpx2's pool at high concurrency
        )

    async def check_client(self, api: anthropic.AsyncAnthropic) -> None:
        try:
            await api.models.list()
        except anthropic.APIConnectionError as exc:
            raise ProviderStartError(f"{self.name}: cannot reach {api.base_url}: {exc.message}") from exc
        except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as exc:
            raise ProviderStartError(f"{self.name}: {api.base_url} refused the API key") from exc
        except anthropic.APIStatusError as exc:
            # A proxy may not list models; reaching it is what this check is for.
            log.info("event=model_list_unavailable provider=%s status=%d", self.name, exc.status_code)

    async def enrich(self, batch: Sequence[Mapping[str, Any]]) -> list[EnrichOutcome]:
        return await self.prompt.run(batch, AnthropicChat(self))


provider_index.register(AnthropicProvider.name, AnthropicConfig, AnthropicProvider)
