"""What a replay will read: per partition of the pipeline's input, the first offset and the end (exclusive).

A range comes from two times (`--from`, `--to`: each resolves to the first offset at or after it, Kafka's
offsets-for-times) or from explicit `P:START-END` offsets (END exclusive). Offsets outside what the topic still
holds are clamped to it, so a plan never asks for records that are gone.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import Consumer

from headwater.api.positions import offsets_at, parse_time, watermarks

RUN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_OFFSETS = re.compile(r"^(\d+):(\d+)-(\d+)$")


class PlanError(ValueError):
    """The range cannot be planned: a bad time or offsets, or a topic that does not exist."""


def new_run_id(now: datetime | None = None) -> str:
    """`20261201-085012-3f9a`: sortable by start, unique enough to share a cluster, valid in a topic name."""
    moment = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{moment}-{secrets.token_hex(2)}"


def check_run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id):
        raise PlanError(f"run id {run_id!r}: lower-case letters, digits and dashes, at most 63 characters")
    return run_id


@dataclass
class PartitionRange:
    partition: int
    start: int
    end: int

    @property
    def count(self) -> int:
        return max(0, self.end - self.start)


@dataclass
class ReplayPlan:
    topic: str
    ranges: list[PartitionRange] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(item.count for item in self.ranges)

    def as_json(self) -> dict[str, list[int]]:
        return {str(item.partition): [item.start, item.end] for item in self.ranges}

    @classmethod
    def from_json(cls, topic: str, data: dict[str, list[int]]) -> ReplayPlan:
        return cls(topic, [PartitionRange(int(p), bounds[0], bounds[1]) for p, bounds in sorted(data.items())])


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=30).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise PlanError(f"input topic {topic} does not exist")
    return sorted(metadata.partitions)


def plan_by_time(consumer: Consumer, topic: str, start: str, end: str) -> ReplayPlan:
    begin_at, end_at = parse_time(start), parse_time(end)
    if end_at <= begin_at:
        raise PlanError(f"--to {end} is not after --from {start}")
    partitions = _partitions(consumer, topic)
    marks = watermarks(consumer, topic, partitions, 30.0)
    ends = {p: high for p, (_, high) in marks.items()}
    starts = offsets_at(consumer, topic, partitions, begin_at, ends)
    stops = offsets_at(consumer, topic, partitions, end_at, ends)
    return ReplayPlan(topic, [PartitionRange(p, starts[p], max(starts[p], stops[p])) for p in partitions])


def plan_by_offsets(consumer: Consumer, topic: str, offsets: str) -> ReplayPlan:
    partitions = _partitions(consumer, topic)
    marks = watermarks(consumer, topic, partitions, 30.0)
    ranges: list[PartitionRange] = []
    for part in offsets.split(","):
        found = _OFFSETS.match(part.strip())
        if found is None:
            raise PlanError(f"--offsets {part!r}: expected PARTITION:START-END, e.g. 0:100-200")
        partition, start, end = (int(value) for value in found.groups())
        if partition not in marks:
            raise PlanError(f"input topic {topic} has no partition {partition} (it has {len(partitions)})")
        if end < start:
            raise PlanError(f"--offsets {part!r}: END is before START")
        low, high = marks[partition]
        ranges.append(PartitionRange(partition, min(max(start, low), high), min(max(end, low), high)))
    return ReplayPlan(topic, sorted(ranges, key=lambda item: item.partition))


def plan_whole(consumer: Consumer, topic: str) -> ReplayPlan:
    """Everything `topic` holds now."""
    partitions = _partitions(consumer, topic)
    marks = watermarks(consumer, topic, partitions, 30.0)
    return ReplayPlan(topic, [PartitionRange(p, marks[p][0], marks[p][1]) for p in partitions])
