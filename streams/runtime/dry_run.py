"""`headwater run PIPELINE.yaml --dry-run --input SAMPLE.jsonl`: every stage over JSON records, without a broker or a
registry, before the pipeline touches a topic.

Each JSON line is encoded with the input topic's schema (from the catalog, or `--input-schema`) exactly as a producer
would, then run through the same engine as the live pipeline. The schema ids come from confluent-kafka's in-memory
registry (`mock://`), so nothing is registered anywhere.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient

from headwater import envelope
from headwater.api.rows import json_lines
from schemas import catalog
from schemas.serde import AvroDeserializer, AvroSerializer, EncodeError
from streams.runtime.config import PipelineConfig
from streams.runtime.engine import PipelineEngine
from streams.runtime.records import InMessage

DRY_RUN_REGISTRY = "mock://headwater-dry-run"


class DryRunError(ValueError):
    """The dry run cannot start: no input schema, or an unreadable input file."""


@dataclass(frozen=True)
class DryOutput:
    line: int
    record: dict[str, Any]


@dataclass(frozen=True)
class DryDeadLetter:
    line: int
    stage: str
    error_class: str
    reason: str


@dataclass
class DryRunResult:
    records: int = 0
    outputs: list[DryOutput] = field(default_factory=list)
    dead_letters: list[DryDeadLetter] = field(default_factory=list)
    cost_usd: float = 0.0
    seconds: float = 0.0

    @property
    def usd_per_million(self) -> float:
        return self.cost_usd / self.records * 1_000_000 if self.records else 0.0


def input_schema(config: PipelineConfig, schema_file: Path | None) -> dict[str, Any]:
    """The input topic's value schema: the given file, else the catalog's schema for that topic."""
    if schema_file is not None:
        loaded: dict[str, Any] = json.loads(schema_file.read_text(encoding="utf-8"))
        return loaded
    topic = config.input.topics[0]
    for entry in catalog.entries():
        if entry.topic == topic:
            return entry.load()
    raise DryRunError(f"no schema for input topic {topic} in the catalog; give one with --input-schema FILE.avsc")


def _messages(path: Path, limit: int | None, serializer: AvroSerializer, topic: str,
              result: DryRunResult) -> Iterator[tuple[int, InMessage]]:
    now_ms = int(time.time() * 1000)
    with path.open(encoding="utf-8") as lines:
        for row in json_lines(lines):
            if limit is not None and result.records >= limit:
                return
            result.records += 1
            if row.error is not None or row.value is None:
                reason = row.error.reason if row.error else "no value"
                result.dead_letters.append(DryDeadLetter(row.line, "decode", "InvalidJSON", reason))
                continue
            try:
                value = serializer.encode(row.value)
            except EncodeError:
                where, reason = serializer.mismatch(row.value)
                result.dead_letters.append(DryDeadLetter(
                    row.line, "decode", "SchemaViolation", f"field {where}: {reason}" if where else reason
                ))
                continue
            yield row.line, InMessage(topic, 0, row.line - 1, None, value, [], now_ms)


def dry_run(config: PipelineConfig, path: Path, limit: int | None = None,
            schema_file: Path | None = None) -> DryRunResult:
    if not path.is_file():
        raise DryRunError(f"input file {path} does not exist")
    registry = SchemaRegistryClient.new_client({"url": DRY_RUN_REGISTRY})
    topic = config.input.topics[0]
    serializer = AvroSerializer(registry, f"{topic}-value", input_schema(config, schema_file))
    engine = PipelineEngine(config, registry)
    result = DryRunResult()
    started = time.monotonic()
    try:
        asyncio.run(_run(engine, AvroDeserializer(registry), _messages(path, limit, serializer, topic, result), result))
    finally:
        engine.close()
    result.cost_usd = sum(engine.enrich.cost_usd.values())
    result.seconds = time.monotonic() - started
    result.outputs.sort(key=lambda item: item.line)
    result.dead_letters.sort(key=lambda item: item.line)
    return result


async def _run(engine: PipelineEngine, decoder: AvroDeserializer, messages: Iterator[tuple[int, InMessage]],
               result: DryRunResult) -> None:
    """The stages over the messages, one micro-batch of the pipeline's size at a time."""
    try:
        await _run_batches(engine, decoder, messages, result)
    finally:
        await engine.stop()


async def _run_batches(engine: PipelineEngine, decoder: AvroDeserializer, messages: Iterator[tuple[int, InMessage]],
                       result: DryRunResult) -> None:
    size = engine.config.batch.size
    while batch := list(itertools.islice(messages, size)):
        line_of = {id(message): line for line, message in batch}
        processed = await engine.process([message for _, message in batch])
        for output in processed.outputs:
            result.outputs.append(DryOutput(line_of[id(output.origin)], decoder.decode(output.value or b"")))
        for dead in processed.dead_letters:
            reason = envelope.header_value(dead.headers, envelope.ERROR_MESSAGE) or ""
            result.dead_letters.append(DryDeadLetter(line_of[id(dead.origin)], dead.stage, dead.reason, reason))
