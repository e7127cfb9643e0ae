"""Predictions of a SageMaker real-time endpoint: one InvokeEndpoint per batch, with a JSON request built from the
batch's records and output fields read from the JSON response by path.

The request is `request_template` with the string `$instances` replaced by the batch's instances, one per record,
each built from `input_fields` (an object, or an array of values for scikit-learn / XGBoost style containers).
Each output field names a path into the response with `[]` marking the per-record list, e.g. `predictions[].score`;
that list must hold one item per record sent, or every record of the call fails with the reason (the answer cannot
be matched to records). Records whose inputs are all null are not sent and get null outputs.

Billing: a real-time endpoint is billed per instance-hour, not per call, so the list price per call is 0; each
record carries `calls: 1/n` of its call, and a pipeline can set `prices: {calls: ...}` to spread its endpoint's
hourly cost over the calls it makes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import Field, JsonValue, field_validator

from headwater import fields
from streams.enrich import aws, provider_index
from streams.enrich.base import (
    Enriched,
    EnrichFailure,
    EnrichOutcome,
    Provider,
    ProviderStartError,
    ProviderUnavailable,
    Throttled,
    TransientError,
)
from streams.enrich.pricing import PriceList

INSTANCES = "$instances"
DEFAULT_TEMPLATE: dict[str, JsonValue] = {"instances": INSTANCES}
PRICES = PriceList(
    {"calls": 0.0},
    read_on="2026-12-01",
    source="https://aws.amazon.com/sagemaker/pricing/ (real-time inference: per instance-hour, not per call)",
)
_MISSING = object()


def _markers(template: JsonValue) -> int:
    if template == INSTANCES:
        return 1
    if isinstance(template, dict):
        return sum(_markers(value) for value in template.values())
    if isinstance(template, list):
        return sum(_markers(value) for value in template)
    return 0


def fill(template: JsonValue, instances: list[Any]) -> Any:
    """The request body: `template` with its `$instances` marker replaced by `instances`."""
    if template == INSTANCES:
        return instances
    if isinstance(template, dict):
        return {key: fill(value, instances) for key, value in template.items()}
    if isinstance(template, list):
        return [fill(value, instances) for value in template]
    return template


def _walk(value: Any, segments: Sequence[str]) -> Any:
    for segment in segments:
        if isinstance(value, dict) and segment in value:
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return _MISSING
    return value


class ResponsePath:
    """`predictions[].score`: the list at `predictions` holds one item per record; each record's value is at
    `score` inside its item. Numbers index lists (`predictions[].scores.1`); `[]` alone is a response that is a list."""

    def __init__(self, path: str) -> None:
        if path.count("[]") != 1:
            raise ValueError(f"response path {path!r} needs exactly one [] marking the per-record list")
        head, tail = path.split("[]")
        if head.endswith(".") or (tail and not tail.startswith(".")):
            raise ValueError(f"response path {path!r}: write it as list[].member")
        self.path = path
        self.head = tuple(head.split(".")) if head else ()
        self.tail = tuple(tail[1:].split(".")) if tail else ()

    def items(self, response: Any, expected: int) -> list[Any]:
        items = _walk(response, self.head)
        if not isinstance(items, list):
            raise ValueError(f"response has no list at {self.path!r}")
        if len(items) != expected:
            raise ValueError(f"response list {self.path!r} has {len(items)} items for {expected} records sent")
        return items

    def value(self, item: Any) -> Any:
        return _walk(item, self.tail)


class SageMakerConfig(aws.AwsConfig):
    endpoint_name: str = Field(min_length=1, description="Name of the real-time endpoint to invoke.")
    input_fields: dict[str, str] = Field(
        min_length=1,
        description="Each instance's members: name in the request -> dotted path of the record field "
        "(`{text: notes}` sends `{\"text\": <notes>}` per record).",
    )
    instance_format: Literal["object", "array"] = Field(
        "object", description="`object`: one JSON object per record; `array`: the values in `input_fields` order."
    )
    request_template: JsonValue = Field(
        default_factory=lambda: dict(DEFAULT_TEMPLATE),
        description=f"The JSON request body; the string `{INSTANCES}` marks where the list of instances goes "
        f"(`{{inputs: {INSTANCES}}}` for Hugging Face containers, `{INSTANCES}` for a bare list).",
    )
    output_fields: dict[str, str] = Field(
        min_length=1,
        description="Record field -> path of its value in the response, `[]` marking the per-record list "
        "(`predictions[].score`; `[].label` when the response is a list; `predictions[].scores.0` indexes).",
    )
    content_type: str = Field("application/json", description="Content-Type of the request.")
    accept: str = Field("application/json", description="Accept header: the response must be JSON.")
    target_variant: str | None = Field(None, description="Production variant to invoke; default SageMaker's routing.")
    batch_size: int = Field(
        64, ge=1, description="Records per InvokeEndpoint request (a request body is at most 6 MB)."
    )

    @field_validator("request_template")
    @classmethod
    def _one_marker(cls, value: JsonValue) -> JsonValue:
        if _markers(value) != 1:
            raise ValueError(f"request_template must contain the string {INSTANCES!r} exactly once")
        return value

    @field_validator("output_fields")
    @classmethod
    def _paths(cls, value: dict[str, str]) -> dict[str, str]:
        for path in value.values():
            ResponsePath(path)
        return value


class SageMakerProvider(Provider):
    """A SageMaker real-time endpoint invoked with a JSON batch of records; outputs read from its answer by path."""

    name = "aws_sagemaker"
    remote = True
    # Inputs are bounded so a default batch of 64 records stays well inside the 6 MB request limit.
    default_max_chars = 20_000
    config: SageMakerConfig

    def __init__(self, config: SageMakerConfig) -> None:
        super().__init__(config)
        self._client: Any = None
        self._inputs = [(name, fields.split(path)) for name, path in config.input_fields.items()]
        self._outputs = {field: ResponsePath(path) for field, path in config.output_fields.items()}

    @property
    def model(self) -> str:
        variant = f"/{self.config.target_variant}" if self.config.target_variant else ""
        return f"sagemaker/{self.config.endpoint_name}{variant}"

    def input_fields(self) -> list[str]:
        return list(self.config.input_fields.values())

    def output_fields(self) -> list[str]:
        return list(self.config.output_fields)

    def price_list(self) -> PriceList:
        return PRICES

    async def _invoke(self, instances: list[Any]) -> bytes:
        params: dict[str, Any] = {
            "EndpointName": self.config.endpoint_name,
            "Body": json.dumps(fill(self.config.request_template, instances), default=str).encode(),
            "ContentType": self.config.content_type,
            "Accept": self.config.accept,
        }
        if self.config.target_variant:
            params["TargetVariant"] = self.config.target_variant
        answer = await aws.call(self._client, "invoke_endpoint", **params)
        # Reading the streamed body is network I/O too: off the event loop like the call.
        body: bytes = await aws.blocking(answer["Body"].read)
        return body

    async def start(self) -> None:
        """An empty batch to the endpoint: proves credentials, the endpoint's existence and that it answers."""
        self._client = aws.client("sagemaker-runtime", self.config)
        where = f"sagemaker-runtime endpoint {self.config.endpoint_name}"
        try:
            await self._invoke([])
        except Throttled:
            return
        except TransientError as exc:
            raise ProviderStartError(f"{where}: {exc}") from None
        except ClientError as exc:
            # ModelError: the container answered and refused an empty batch, so the endpoint is up.
            if aws.error_code(exc) != "ModelError":
                message = exc.response.get("Error", {}).get("Message", "")
                raise ProviderStartError(f"{where}: {aws.error_code(exc)}: {message}") from None

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _instance(self, record: Mapping[str, Any]) -> Any:
        values = {name: fields.get(record, path) for name, path in self._inputs}
        if all(value is None for value in values.values()):
            return None
        return list(values.values()) if self.config.instance_format == "array" else values

    async def _call(self, instances: list[Any]) -> list[EnrichOutcome]:
        """Outcomes of the records sent. An endpoint that is gone is an outage. The model refusing the request
        (`ModelError`, or a `ValidationError` such as a body over 6 MB) is the record's fault for one record; for
        several it is raised, so the stage retries them one by one and only the record at fault fails."""
        try:
            body = await self._invoke(instances)
        except ClientError as exc:
            code, message = aws.error_code(exc), exc.response.get("Error", {}).get("Message", "")
            if code == "ValidationError" and "not found" in message:
                raise ProviderUnavailable(self.name, f"{self.config.endpoint_name}: {message}") from exc
            if code in {"ModelError", "ValidationError"} and len(instances) == 1:
                return [EnrichFailure(code, f"endpoint {self.config.endpoint_name}: {message}")]
            raise
        return self._read(body, len(instances))

    def _read(self, body: bytes, count: int) -> list[EnrichOutcome]:
        try:
            response = json.loads(body)
            columns = {field: path.items(response, count) for field, path in self._outputs.items()}
        except ValueError as exc:
            reason = f"endpoint {self.config.endpoint_name}: {exc}"
            return [EnrichFailure("SageMakerResponseMismatch", reason) for _ in range(count)]
        outcomes: list[EnrichOutcome] = []
        for index in range(count):
            values = {field: self._outputs[field].value(items[index]) for field, items in columns.items()}
            missing = [self.config.output_fields[field] for field, value in values.items() if value is _MISSING]
            if missing:
                reason = f"endpoint {self.config.endpoint_name}: response item {index} lacks {', '.join(missing)}"
                outcomes.append(EnrichFailure("SageMakerResponseMismatch", reason))
            else:
                outcomes.append(Enriched(values, billed={"calls": 1 / count}))
        return outcomes

    async def enrich(self, batch: Sequence[Mapping[str, Any]]) -> list[EnrichOutcome]:
        instances = [self._instance(record) for record in batch]
        sent = [index for index, instance in enumerate(instances) if instance is not None]
        outcomes: list[EnrichOutcome] = [Enriched(dict.fromkeys(self._outputs)) for _ in batch]
        if sent:
            answered = await self._call([instances[index] for index in sent])
            for index, outcome in zip(sent, answered, strict=True):
                outcomes[index] = outcome
        return outcomes


provider_index.register(SageMakerProvider.name, SageMakerConfig, SageMakerProvider)
