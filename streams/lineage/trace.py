"""Follow one record from its source through the pipeline to the sinks, by its key or its trace id.

The raw record is found by key (its newest version) or by `hw-trace-id`; what the pipeline made of it is the
enriched record or dead letter whose `hw-source` names the raw record's position; its sink row is the warehouse
row of its key (with the `_hw_source` it was last written from) or the S3 objects whose offset range holds it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import psycopg

from connectors.base import Connector, ConnectorError
from connectors.sinks.duckdb import DuckDBSink
from connectors.sinks.s3 import S3Sink
from connectors.sinks.warehouse import WarehouseSink
from headwater import envelope
from headwater.settings import KafkaSettings
from streams.lineage.scan import Seen, scan, topic_names

STAGES = ("raw", "enriched", "dlq")


class NotFound(LookupError):
    """No record with that key or trace id in the scanned part of the topics."""


@dataclass
class Lineage:
    query: str
    matched_by: str
    raw: Seen
    outcomes: list[Seen] = field(default_factory=list)
    sinks: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "matched_by": self.matched_by,
            "trace_id": self.raw.trace_id,
            "source": source_of(self.raw),
            "raw": {**_place(self.raw), "schema_id": self.raw.schema_id},
            "outcomes": [outcome_of(seen) for seen in self.outcomes],
            "sinks": self.sinks,
        }


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def _place(seen: Seen) -> dict[str, Any]:
    return {"topic": seen.topic, "partition": seen.partition, "offset": seen.offset, "key": seen.key,
            "timestamp_ms": seen.timestamp_ms}


def source_of(raw: Seen) -> dict[str, Any]:
    """Who wrote the raw record: a source connector and its cursor (`name/cursor`), or a producer's own label."""
    text = raw.headers.get(envelope.SOURCE)
    if text is None:
        return {"connector": None, "cursor": None}
    name, _, cursor = text.partition("/")
    return {"connector": name, "cursor": cursor or None}


def enrichment_of(header: str | None) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    if header:
        try:
            parsed = json.loads(header)
        except json.JSONDecodeError:
            parsed = []
        steps = [step for step in parsed if isinstance(step, dict)] if isinstance(parsed, list) else []
    cost = sum(float(step.get("usd") or 0) for step in steps)
    return {"steps": steps, "usd": round(cost, 8)}


def outcome_of(seen: Seen) -> dict[str, Any]:
    headers = seen.headers
    if envelope.ERROR_STAGE in headers:
        return {"kind": "dead_letter", **_place(seen), "stage": headers[envelope.ERROR_STAGE],
                "error_class": headers.get(envelope.ERROR_CLASS), "reason": headers.get(envelope.ERROR_MESSAGE),
                "at": headers.get(envelope.ERROR_AT), "pipeline": headers.get(envelope.PIPELINE)}
    return {"kind": "enriched", **_place(seen), "pipeline": headers.get(envelope.PIPELINE),
            "schema_in": _int(headers.get(envelope.SCHEMA_IN)), "schema_out": _int(headers.get(envelope.SCHEMA_OUT)),
            "enrich": enrichment_of(headers.get(envelope.ENRICH)), "quality": headers.get(envelope.QUALITY),
            "replay_run": headers.get("hw-replay-run")}


def family_of(topic: str) -> str:
    """`<domain>.<entity>` of a topic name of any stage."""
    return ".".join(topic.split(".")[:2])


def _families(kafka: KafkaSettings, topic: str | None) -> list[str]:
    if topic is not None:
        return [family_of(topic)]
    names = topic_names(kafka)
    return sorted({family_of(name) for name in names
                   if not name.startswith("_") and len(name.split(".")) >= 3 and name.split(".")[2] in STAGES})


def _find_raw(kafka: KafkaSettings, query: str, families: Sequence[str], last: int) -> tuple[Seen, str]:
    newest: tuple[Seen, str] | None = None
    raw_topics = [f"{family}.raw" for family in families]
    for seen in scan(kafka, raw_topics, lambda s: s.key == query or s.trace_id == query, last):
        by = "trace-id" if seen.trace_id == query else "key"
        if by == "trace-id":
            return seen, by  # a trace id names one record
        if newest is None or seen.timestamp_ms >= newest[0].timestamp_ms:
            newest = (seen, by)
    if newest is None:
        where = ", ".join(raw_topics) or "no raw topics on this cluster"
        raise NotFound(f"no record with key or trace id {query!r} in the last {last:,} records of each partition "
                       f"of {where} (raise --scan to look further back)")
    return newest


def _outcomes(kafka: KafkaSettings, raw: Seen, last: int) -> list[Seen]:
    family = family_of(raw.topic)
    return list(scan(kafka, [f"{family}.enriched", f"{family}.dlq"],
                     lambda s: s.headers.get(envelope.SOURCE) == raw.position, last))


def _sink_rows(sinks: Sequence[Connector[Any]], enriched: Seen) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for sink in sinks:
        if enriched.topic not in getattr(sink.config, "topics", []):
            continue
        entry: dict[str, Any] = {"connector": sink.name, "type": type(sink).__name__, "from": enriched.position}
        try:
            if isinstance(sink, DuckDBSink) and not sink.config.database.exists():
                entry["state"] = f"no database file {sink.config.database}"
            elif isinstance(sink, WarehouseSink):
                row = sink.row_of(enriched.topic, enriched.key or "") if enriched.key is not None else None
                entry["table"] = sink.dataset_name(sink.config.table_for(enriched.topic))
                entry["namespace"] = sink.dataset_namespace
                entry["row"] = None if row is None else {"source": row.source, "partition": row.partition,
                                                         "offset": row.offset}
                entry["state"] = _row_state(row.source if row else None, row.offset if row else None, enriched)
            elif isinstance(sink, S3Sink):
                objects = sink.objects_holding(enriched.topic, enriched.partition, enriched.offset)
                entry["namespace"] = sink.dataset_namespace
                entry["objects"] = objects
                entry["state"] = "written" if objects else "not yet written"
        except (ConnectorError, duckdb.Error, psycopg.Error) as exc:  # reported beside the rest of the path
            entry["state"] = f"unreadable: {type(exc).__name__}: {' '.join(str(exc).split())}"
        rows.append(entry)
    return rows


def _row_state(row_source: str | None, row_offset: int | None, enriched: Seen) -> str:
    if row_source is None and row_offset is None:
        return "no row"
    if row_source == enriched.position:
        return "row written from this record"
    if row_offset is not None and row_offset > enriched.offset:
        return f"row since replaced by {row_source}"
    return f"row written from {row_source}"


def trace(kafka: KafkaSettings, query: str, *, topic: str | None = None, sinks: Sequence[Connector[Any]] = (),
          last: int = 100_000) -> Lineage:
    """The path of the record with key or trace id `query`; NotFound when the scanned records do not hold it."""
    raw, by = _find_raw(kafka, query, _families(kafka, topic), last)
    found = Lineage(query, by, raw, _outcomes(kafka, raw, last))
    try:
        for outcome in found.outcomes:
            if envelope.ERROR_STAGE not in outcome.headers:
                found.sinks += _sink_rows(sinks, outcome)
    finally:
        for sink in sinks:
            sink.close()
    return found
