"""The stages of one pipeline over a micro-batch: decode → transform → enrich → quality → encode.

Every record ends as exactly one `OutMessage`: an enriched output, or a dead letter carrying its original bytes and
the reason. Only infrastructure failures (registry unreachable) raise, so the worker can retry the whole batch.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro.validation import ValidationError, validate

from headwater import envelope
from headwater.kafka.config import KafkaSettings
from headwater.oversized import ClaimCheck
from headwater.settings import EnrichSettings
from quality.validator import QualityValidator, Verdict
from schemas.serde import AvroDeserializer, AvroSerializer, EncodeError, SerdeError
from streams.enrich import EnrichStage, build
from streams.enrich.base import Provider
from streams.enrich.cache import ResultCache, cache_path
from streams.runtime.config import PipelineConfig
from streams.runtime.enrich_fields import EnrichFieldError, check_inputs, schema_field_names
from streams.runtime.records import InMessage, Item, OutMessage
from streams.transforms import TransformError

_LINEAGE = frozenset(
    {envelope.SOURCE, envelope.PIPELINE, envelope.SCHEMA_IN, envelope.SCHEMA_OUT, envelope.ENRICH, envelope.QUALITY}
)
_ERRORS = frozenset({envelope.ERROR_STAGE, envelope.ERROR_CLASS, envelope.ERROR_MESSAGE, envelope.ERROR_AT})


@dataclass
class BatchResult:
    outputs: list[OutMessage]
    dead_letters: list[OutMessage]
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def messages(self) -> list[OutMessage]:
        return self.outputs + self.dead_letters


@dataclass(frozen=True)
class StageSwitches:
    """Which optional stages run (the benchmark turns enrichment and quality off to measure the framework)."""

    enrich: bool = True
    quality: bool = True


def _result_cache(
    config: PipelineConfig, providers: Sequence[Provider], settings: EnrichSettings | None
) -> ResultCache | None:
    """The pipeline's result cache when a provider uses one (and the process keeps caches at all)."""
    if settings is None or not any(provider.uses_cache() for provider in providers):
        return None
    return ResultCache(cache_path(config.name, settings.cache_dir), settings.cache_max_entries)


class PipelineEngine:
    def __init__(
        self,
        config: PipelineConfig,
        registry: SchemaRegistryClient,
        switches: StageSwitches = StageSwitches(),
        max_bytes: Callable[[str], int] = lambda topic: 1_000_000,
        claim_check: ClaimCheck | None = None,
        enrich_settings: EnrichSettings | None = None,
        kafka: KafkaSettings | None = None,
    ) -> None:
        self.config = config
        reader = config.load_schema(config.input.reader_schema) if config.input.reader_schema else None
        self.decoder = AvroDeserializer(registry, reader_schema=reader)
        self.output_schema = config.load_schema(config.output.schema_)
        self.encoder = AvroSerializer(registry, config.output_subject, self.output_schema)
        self._output_fields = [spec["name"] for spec in self.output_schema["fields"]]
        self.steps = list(config.transform)
        providers = [build(step.provider, step.config()) for step in config.enrich] if switches.enrich else []
        if providers and not any(step.op == "hook" for step in self.steps):
            self._check_enrich_inputs(registry, providers)
        self.enrich = EnrichStage(
            providers, config.label, cache=_result_cache(config, providers, enrich_settings), kafka=kafka
        )
        suite = config.suite_path() if switches.quality else None
        self.quality = QualityValidator(suite) if suite is not None else None
        self.max_bytes = max_bytes
        self.claim_check = claim_check
        self._pipeline_header = config.label.encode()
        self._cpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hw-{config.name}")

    def _check_enrich_inputs(self, registry: SchemaRegistryClient, providers: list[Provider]) -> None:
        """Every field a provider reads must exist in the input subjects' latest schemas (TopicNameStrategy), the
        output schema, or be written by a transform or an earlier provider; unregistered inputs are not checked."""
        known = set(self._output_fields)
        subjects = [f"{topic}-value" for topic in self.config.input.topics]
        for subject in subjects:
            try:
                known |= schema_field_names(registry.get_latest_version(subject).schema.schema_str)
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    return
                raise
        targets = {value for step in self.steps for value in (getattr(step, "to", None),) if isinstance(value, str)}
        try:
            check_inputs(providers, known, targets, f"input subjects {', '.join(subjects)}")
        except EnrichFieldError as exc:
            raise EnrichFieldError(f"pipeline {self.config.label}: {exc}") from None

    @property
    def schema_out(self) -> int:
        return self.encoder.schema_id

    def dead_letter(self, message: InMessage, stage: envelope.ErrorStage, error_class: str, reason: str) -> OutMessage:
        headers = envelope.dead_letter_headers(
            message.headers, stage=stage, error_class=error_class, message=reason, source=message.source
        )
        return OutMessage(
            self.config.dlq_topic, message.key, message.value, headers, message, "dead_letter", stage, error_class
        )

    def decode_and_transform(self, batch: Sequence[InMessage]) -> tuple[list[Item], list[OutMessage]]:
        items: list[Item] = []
        dead: list[OutMessage] = []
        decode = self.decoder.decode_with_id
        for message in batch:
            if message.value is None:
                dead.append(self.dead_letter(message, "decode", "WireFormatError", "message has no value"))
                continue
            try:
                record, schema_id = decode(message.value)
            except SerdeError as exc:
                dead.append(self.dead_letter(message, "decode", type(exc).__name__, str(exc)))
                continue
            try:
                for step in self.steps:
                    step.apply(record)
            except TransformError as exc:
                dead.append(self.dead_letter(message, "transform", "TransformError", f"{step.op}: {exc}"))
                continue
            except Exception as exc:  # a user hook may raise anything; the record goes to the dead letters
                dead.append(self.dead_letter(message, "transform", type(exc).__name__, f"{step.op} raised: {exc}"))
                continue
            trace = envelope.header_value(message.headers, envelope.TRACE_ID)
            items.append(Item(message, record, schema_id, trace.encode() if trace else os.urandom(16).hex().encode()))
        return items, dead

    def judge(self, items: list[Item]) -> tuple[list[Item], list[OutMessage]]:
        verdicts: list[Verdict] = self.quality.validate([item.record for item in items]) if self.quality else []
        kept: list[Item] = []
        dead: list[OutMessage] = []
        for index, item in enumerate(items):
            verdict = verdicts[index] if verdicts else None
            if verdict is not None and verdict.blocking:
                names = ",".join(verdict.blocking)
                dead.append(self.dead_letter(
                    item.message, "quality", names, f"failed blocking expectations: {', '.join(verdict.blocking)}"
                ))
                continue
            if verdict is not None:
                item.warnings = verdict.warnings
            kept.append(item)
        return kept, dead

    def encode(self, items: list[Item]) -> tuple[list[OutMessage], list[OutMessage]]:
        outputs: list[OutMessage] = []
        dead: list[OutMessage] = []
        schema_out = str(self.schema_out).encode()
        enriched_at = datetime.now(UTC)
        names = self._output_fields
        topic = self.config.output.topic
        limit = self.max_bytes(topic)
        for item in items:
            record = item.record
            record["quality"] = "WARN" if item.warnings else "PASS"
            record["quality_warnings"] = list(item.warnings)
            record["enriched_at"] = enriched_at
            record["pipeline"] = self.config.label
            projected = {name: record[name] for name in names if name in record}
            try:
                value = self.encoder.encode(projected)
            except EncodeError:
                dead.append(self.dead_letter(item.message, "encode", "SchemaViolation", self._violation(projected)))
                continue
            message = item.message
            headers = [(name, data) for name, data in message.headers if name not in _LINEAGE and name not in _ERRORS]
            headers += [
                (envelope.SOURCE, message.source.encode()),
                (envelope.PIPELINE, self._pipeline_header),
                (envelope.SCHEMA_IN, str(item.schema_in).encode()),
                (envelope.SCHEMA_OUT, schema_out),
                (envelope.TRACE_ID, item.trace_id),
                (envelope.ENRICH, item.enrich_header),
                (envelope.QUALITY, ",".join(item.warnings).encode() if item.warnings else b"pass"),
            ]
            output = OutMessage(topic, message.key, value, headers, message, "output")
            if not output.fits(limit):
                dead.append(self.dead_letter(
                    message, "produce", "RecordTooLarge",
                    f"enriched record is {output.size()} bytes, over the {limit}-byte limit of topic {topic}",
                ))
                continue
            outputs.append(output)
        return outputs, dead

    def _violation(self, record: dict[str, Any]) -> str:
        try:
            validate(record, self.output_schema, raise_errors=True)
        except (ValidationError, TypeError, ValueError, KeyError) as exc:  # the validator trips on exotic values too
            return f"record does not match output schema {self.config.output_subject}: {exc}"
        return f"record does not encode with output schema {self.config.output_subject}"

    async def process(self, batch: Sequence[InMessage]) -> BatchResult:
        loop = asyncio.get_running_loop()
        seconds: dict[str, float] = {}
        clock = time.perf_counter()
        items, dead = await loop.run_in_executor(self._cpu, self.decode_and_transform, batch)
        clock = _lap(seconds, "decode", clock)
        if self.enrich.providers and items:
            failures, headers = await self.enrich.run([item.record for item in items])
            survivors: list[Item] = []
            for item, failure, header in zip(items, failures, headers, strict=True):
                if failure is None:
                    item.enrich_header = header
                    survivors.append(item)
                else:
                    dead.append(self.dead_letter(item.message, "enrich", failure.error_class, failure.message))
            items = survivors
            clock = _lap(seconds, "enrich", clock)
        if self.quality is not None and items:
            items, failed = await loop.run_in_executor(self._cpu, self.judge, items)
            dead.extend(failed)
            clock = _lap(seconds, "quality", clock)
        outputs, rejected = await loop.run_in_executor(self._cpu, self.encode, items)
        dead.extend(rejected)
        _lap(seconds, "encode", clock)
        return BatchResult(outputs, dead, seconds)

    async def start(self) -> None:
        """Start the enrichment providers (their credentials, endpoints and models are checked here, before anything
        is consumed; `ProviderStartError` otherwise)."""
        await self.enrich.start()

    async def stop(self) -> None:
        """Close the enrichment providers' clients and model workers."""
        await self.enrich.close()

    def close(self) -> None:
        self._cpu.shutdown(wait=False)


def _lap(seconds: dict[str, float], stage: str, since: float) -> float:
    """Add the time since `since` to `stage` (wall time: the stages wait on executors and model processes)."""
    now = time.perf_counter()
    seconds[stage] = seconds.get(stage, 0.0) + now - since
    return now
