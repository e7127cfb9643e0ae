"""Where reading a topic starts and stops: `earliest`, `latest`, a time, or explicit `P:OFFSET` positions.

Times are ISO-8601 (`2026-11-30T08:00:00Z`; without a zone, UTC) or a duration back from now (`15m`, `2h`, `7d`).
A time resolves per partition to the first offset whose timestamp is at or after it (Kafka's offsets-for-times);
a partition with no such record starts (or stops) at its end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from confluent_kafka import Consumer, TopicPartition

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class PositionError(ValueError):
    """A position that cannot be read, or names a partition the topic lacks."""


@dataclass(frozen=True)
class Start:
    """`kind` is earliest, latest, time (with `at`) or offsets (with `offsets` by partition)."""

    kind: str
    at: datetime | None = None
    offsets: dict[int, int] | None = None


@dataclass(frozen=True)
class Until:
    """`kind` is end (the end offsets when reading began), time (with `at`) or follow (never stop)."""

    kind: str
    at: datetime | None = None


def parse_time(text: str, now: datetime | None = None) -> datetime:
    duration = _DURATION.match(text.strip())
    if duration:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[duration[2]]: float(duration[1])})
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise PositionError(f"{text!r} is neither a time (ISO-8601, e.g. 2026-11-30T08:00:00Z) nor a duration "
                            "such as 15m, 2h, 7d") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_start(text: str) -> Start:
    value = text.strip()
    if value in ("earliest", "latest"):
        return Start(value)
    if ":" in value and all(part.count(":") == 1 and part.split(":")[0].isdigit() for part in value.split(",")):
        offsets: dict[int, int] = {}
        for part in value.split(","):
            partition, offset = part.split(":")
            if not offset.isdigit():
                raise PositionError(f"{part!r}: an offset is a non-negative integer")
            offsets[int(partition)] = int(offset)
        return Start("offsets", offsets=offsets)
    return Start("time", at=parse_time(value))


def parse_until(text: str | None) -> Until:
    if text is None or text.strip() == "end":
        return Until("end")
    if text.strip() == "follow":
        return Until("follow")
    return Until("time", at=parse_time(text))


def offsets_at(consumer: Consumer, topic: str, partitions: list[int], at: datetime, ends: dict[int, int],
               timeout: float = 30.0) -> dict[int, int]:
    """Per partition, the first offset whose timestamp is at or after `at`; its end when there is none."""
    millis = int(at.timestamp() * 1000)
    found = consumer.offsets_for_times([TopicPartition(topic, p, millis) for p in partitions], timeout=timeout)
    return {tp.partition: tp.offset if tp.offset >= 0 else ends[tp.partition] for tp in found}


def watermarks(consumer: Consumer, topic: str, partitions: list[int], timeout: float) -> dict[int, tuple[int, int]]:
    return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout) for p in partitions}


def resolve(
    consumer: Consumer, topic: str, partitions: list[int], start: Start, until: Until, timeout: float = 30.0
) -> tuple[dict[int, int], dict[int, int] | None]:
    """Start offsets and (unless following) stop offsets, exclusive, per partition."""
    marks = watermarks(consumer, topic, partitions, timeout)
    lows = {p: low for p, (low, _) in marks.items()}
    ends = {p: high for p, (_, high) in marks.items()}
    if start.kind == "earliest":
        begin = dict(lows)
    elif start.kind == "latest":
        begin = dict(ends)
    elif start.kind == "time":
        assert start.at is not None
        begin = offsets_at(consumer, topic, partitions, start.at, ends, timeout)
    else:
        assert start.offsets is not None
        unknown = sorted(set(start.offsets) - set(partitions))
        if unknown:
            raise PositionError(f"topic {topic} has no partition {unknown[0]} (it has {len(partitions)})")
        begin = {p: max(lows[p], min(start.offsets.get(p, ends[p]), ends[p])) for p in partitions}
    if until.kind == "follow":
        return begin, None
    if until.kind == "end":
        stop = dict(ends)
    else:
        assert until.at is not None
        stop = offsets_at(consumer, topic, partitions, until.at, ends, timeout)
    return begin, stop
