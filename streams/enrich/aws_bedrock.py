"""`aws_bedrock`: a foundation model on Amazon Bedrock through the bedrock-runtime Converse API (boto3), the answer
structured through one tool whose `inputSchema.json` is the outputs' JSON schema, forced with
`toolChoice: {"tool": {"name": ...}}` and read from the `toolUse` block's `input`.

Billed by the answer's usage: `inputTokens` and `outputTokens` as `input_tokens` and `output_tokens`, split evenly
over the records of a packed prompt, priced from Bedrock's on-demand list prices by model id (a cross-region
inference profile such as `us.` or `global.` is priced as its model). A guardrail or content filter stepping in fails
the record asked (`Refused`); a request Bedrock rejects (`ValidationException`, e.g. a prompt over the model's
context) fails the record it was for. Either on a packed prompt is raised, so the stage asks for its records one by
one and only the record at fault fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError
from pydantic import Field, model_validator

from streams.enrich import aws, provider_index
from streams.enrich.base import (
    EnrichFailure,
    EnrichOutcome,
    ProviderStartError,
    ProviderUnavailable,
    Throttled,
    TransientError,
)
from streams.enrich.model_prices import token_prices, warn_if_unpriced
from streams.enrich.pricing import PriceList
from streams.enrich.prompting import ChatPromptConfig, PromptedProvider, Reply

SERVICE = "bedrock-runtime"
PRICES_READ_ON = "2026-12-01"
PRICES_SOURCE = "https://aws.amazon.com/bedrock/pricing/"
USD_PER_MILLION_TOKENS: dict[str, tuple[float, ...]] = {
    # model id without its version suffix: (input, output) USD per million tokens, on-demand, US East (N. Virginia)
    "anthropic.claude-3-haiku": (0.25, 1.25),
    "anthropic.claude-3-5-haiku": (0.80, 4.00),
    "anthropic.claude-haiku-4-5": (1.00, 5.00),
    "anthropic.claude-3-5-sonnet": (3.00, 15.00),
    "anthropic.claude-3-7-sonnet": (3.00, 15.00),
    "anthropic.claude-sonnet-4": (3.00, 15.00),
    "anthropic.claude-sonnet-4-5": (3.00, 15.00),
    "amazon.nova-micro": (0.035, 0.14),
    "amazon.nova-lite": (0.06, 0.24),
    "amazon.nova-pro": (0.80, 3.20),
    "amazon.nova-premier": (2.50, 12.50),
    "meta.llama3-1-8b-instruct": (0.22, 0.22),
    "meta.llama3-1-70b-instruct": (0.72, 0.72),
    "meta.llama3-2-1b-instruct": (0.10, 0.10),
    "meta.llama3-2-3b-instruct": (0.15, 0.15),
    "meta.llama3-3-70b-instruct": (0.72, 0.72),
}
INFERENCE_PROFILE_PREFIXES = ("us.", "us-gov.", "eu.", "apac.", "jp.", "au.", "ca.", "global.")
REFUSING_STOPS = frozenset({"guardrail_intervened", "content_filtered"})
MALFORMED_STOPS = frozenset({"malformed_tool_use", "malformed_model_output"})
RECORD_FAULTS = frozenset({"ValidationException", "ModelErrorException"})
"""Bedrock rejected what it was sent (too long for the model's context, content the model cannot process): the
records of that request are at fault, not the service."""
GONE_FOR_US = frozenset({*aws.CREDENTIAL_CODES, "ResourceNotFoundException"})
"""Refused credentials, model access withdrawn or a model id that does not exist: no record is at fault, so the
pipeline pauses instead of dead-lettering everything."""


class PackRefused(Exception):
    """A guardrail or content filter stepped in on a packed prompt: raised so the stage asks for its records one by
    one and only the record whose content it was is refused."""


def base_model(model_id: str) -> str:
    """The foundation model a model id, ARN or cross-region inference profile names (`us.amazon.nova-lite-v1:0`
    and `arn:aws:bedrock:...:inference-profile/us.amazon.nova-lite-v1:0` are `amazon.nova-lite-v1:0`)."""
    name = model_id.rsplit("/", 1)[-1]
    for prefix in INFERENCE_PROFILE_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


class BedrockConfig(ChatPromptConfig, aws.AwsConfig):
    model_id: str = Field(
        min_length=1,
        max_length=256,
        description="Bedrock model id, inference profile or ARN (`anthropic.claude-3-5-haiku-20241022-v1:0`, "
        "`amazon.nova-lite-v1:0`, `us.anthropic.claude-haiku-4-5-20251001-v1:0`); model access must be enabled.",
    )
    max_tokens: int = Field(1024, ge=1, description="Most tokens per answer (`inferenceConfig.maxTokens`).")
    temperature: float | None = Field(
        0.0, ge=0, le=1, description="Sampling temperature (`inferenceConfig.temperature`); null for the model's."
    )
    tool_name: str = Field(
        "record_answer", pattern=r"^[a-zA-Z0-9_-]{1,64}$", description="Name of the tool the answer is given through."
    )
    force_tool: bool = Field(
        True,
        description="Send `toolChoice` naming the tool (Claude, Nova, Mistral Large); false for models that refuse "
        "toolChoice (Llama), which then pick the tool from the prompt and are corrected once when they do not.",
    )
    # Bedrock's own patterns: a malformed guardrail would be a ValidationException on every call, dead-lettering
    # every record, so it is refused when the pipeline loads.
    guardrail_id: str | None = Field(
        None,
        pattern=r"^([a-z0-9]+|arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]+)$",
        description="Guardrail applied to each call (`guardrailConfig`): its id or ARN.",
    )
    guardrail_version: str | None = Field(
        None, pattern=r"^([1-9][0-9]{0,7}|DRAFT)$", description="Version of that guardrail (`DRAFT` or a number)."
    )

    @model_validator(mode="after")
    def _guardrail_pair(self) -> BedrockConfig:
        if (self.guardrail_id is None) != (self.guardrail_version is None):
            raise ValueError("guardrail_id and guardrail_version go together")
        return self


class BedrockChat:
    """One structured exchange with Converse (the `Chat` of `prompting`) for a call of `records` records."""

    def __init__(self, provider: BedrockProvider, records: int) -> None:
        self._provider = provider
        self._config = provider.config
        self._records = records

    def _request(self, messages: list[dict[str, Any]], schema: Mapping[str, Any]) -> dict[str, Any]:
        config = self._config
        inference: dict[str, Any] = {"maxTokens": config.max_tokens}
        if config.temperature is not None:
            inference["temperature"] = config.temperature
        tool = {
            "toolSpec": {
                "name": config.tool_name,
                "description": "Record the answer, matching the input schema exactly.",
                "inputSchema": {"json": dict(schema)},
            }
        }
        tools: dict[str, Any] = {"tools": [tool]}
        if config.force_tool:
            tools["toolChoice"] = {"tool": {"name": config.tool_name}}
        request: dict[str, Any] = {
            "modelId": config.model_id,
            "messages": messages,
            "inferenceConfig": inference,
            "toolConfig": tools,
        }
        if config.system:
            request["system"] = [{"text": config.system}]
        if config.guardrail_id is not None:
            request["guardrailConfig"] = {
                "guardrailIdentifier": config.guardrail_id,
                "guardrailVersion": config.guardrail_version,
            }
        return request

    async def ask(self, prompt: str, schema: Mapping[str, Any]) -> Reply:
        return await self._send([{"role": "user", "content": [{"text": prompt}]}], schema)

    async def correct(self, prompt: str, schema: Mapping[str, Any], previous: Reply, correction: str) -> Reply:
        said: list[dict[str, Any]] = previous.turn or [{"text": "(no answer)"}]
        tool_uses = [block["toolUse"] for block in said if "toolUse" in block]
        if tool_uses:
            # Converse requires a toolResult for every toolUse of the turn before: each gets the correction.
            reply: list[dict[str, Any]] = [
                {"toolResult": {"toolUseId": use["toolUseId"], "content": [{"text": correction}], "status": "error"}}
                for use in tool_uses
            ]
        else:
            reply = [{"text": correction}]
        messages = [
            {"role": "user", "content": [{"text": prompt}]},
            {"role": "assistant", "content": said},
            {"role": "user", "content": reply},
        ]
        return await self._send(messages, schema)

    async def _send(self, messages: list[dict[str, Any]], schema: Mapping[str, Any]) -> Reply:
        name = self._provider.name
        try:
            answer = await aws.call(self._provider.client, "converse", **self._request(messages, schema))
        except ClientError as exc:
            code = aws.error_code(exc)
            message = exc.response.get("Error", {}).get("Message", "")
            if code in GONE_FOR_US:
                raise ProviderUnavailable(name, f"{code}: {message}") from exc
            if code == "ModelTimeoutException":
                raise TransientError(f"{name}: {code}: {message}") from exc
            if code in RECORD_FAULTS and self._records == 1:
                return Reply(failure=EnrichFailure(code, f"{name} rejected the request: {message}"))
            # Several records in one prompt: raised, so the stage asks for them one by one and only the record
            # at fault fails.
            raise
        return self._reply(answer)

    def _reply(self, answer: Mapping[str, Any]) -> Reply:
        usage = answer.get("usage", {})
        billed = {"input_tokens": usage.get("inputTokens", 0), "output_tokens": usage.get("outputTokens", 0)}
        content: list[dict[str, Any]] = answer.get("output", {}).get("message", {}).get("content", [])
        text = " ".join(block["text"] for block in content if "text" in block)
        stop = answer.get("stopReason")
        if stop in REFUSING_STOPS:
            if self._records > 1:
                raise PackRefused(f"{self._provider.name}: {stop} on a prompt of {self._records} records")
            reason = f"{stop}: {text[:1000]}" if text else str(stop)
            return Reply(failure=EnrichFailure("Refused", reason), billed=billed)
        if stop == "max_tokens":
            return Reply(problem="the answer was cut off at max_tokens", billed=billed, turn=content)
        if stop in MALFORMED_STOPS:
            return Reply(problem=f"the answer was {stop}", billed=billed, turn=content)
        for block in content:
            use = block.get("toolUse")
            if use is not None and use.get("name") == self._config.tool_name:
                return Reply(answer=use.get("input"), billed=billed, turn=content)
        return Reply(problem=f"the answer did not use the tool {self._config.tool_name}", billed=billed, turn=content)


class BedrockProvider(PromptedProvider):
    """A Bedrock foundation model through the Converse API, answering through a tool whose schema is the outputs."""

    name = "aws_bedrock"
    remote = True
    max_batch = 100
    default_max_chars = 20_000
    config: BedrockConfig

    def __init__(self, config: BedrockConfig) -> None:
        super().__init__(config)
        self._client: Any = None

    @property
    def model(self) -> str:
        return self.config.model_id

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError(f"provider {self.name} used before start()")
        return self._client

    def price_list(self) -> PriceList:
        return token_prices(base_model(self.config.model_id), USD_PER_MILLION_TOKENS, PRICES_READ_ON, PRICES_SOURCE)

    async def start(self) -> None:
        """Credentials, then CountTokens for the model: it reaches the endpoint and checks the signature and the
        identity's access at no charge (Bedrock does not bill token counting, and nothing is generated)."""
        if self._client is None:  # started once, whether by the stage or by whoever built it
            self._client = aws.client(SERVICE, self.config)
        await self._probe()
        warn_if_unpriced(self)

    async def _probe(self) -> None:
        where = f"{SERVICE} at {self._client.meta.endpoint_url}"
        converse = {"messages": [{"role": "user", "content": [{"text": "ping"}]}]}
        try:
            await aws.call(self._client, "count_tokens", modelId=self.config.model_id, input={"converse": converse})
        except Throttled:
            return
        except (TransientError, ProviderStartError) as exc:
            raise ProviderStartError(f"{where}: {' '.join(str(exc).split())}") from None
        except ClientError as exc:
            # A model that cannot count tokens (Nova, Llama) answers ValidationException: reached and signed.
            code = aws.error_code(exc)
            if code in GONE_FOR_US:
                message = exc.response.get("Error", {}).get("Message", "")
                raise ProviderStartError(f"{where}: {code}: {message}") from None

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def enrich(self, batch: Sequence[Mapping[str, Any]]) -> list[EnrichOutcome]:
        return await self.prompt.run(batch, BedrockChat(self, len(batch)))


provider_index.register(BedrockProvider.name, BedrockConfig, BedrockProvider)
