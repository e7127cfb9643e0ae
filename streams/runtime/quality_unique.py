"""Uniqueness across the stream: `expect_column_values_to_be_unique` (and the compound form) judged per record
against every value seen within the horizon (`quality.unique_within`), not only the batch's.

The state is a table value → first occurrence (`hw-source`, timestamp) whose changelog is a compacted topic,
`_headwater.quality.<pipeline>.unique`, with `retention.ms` set to the horizon so Kafka drops what has expired.
Any worker of the group rebuilds it by reading the changelog from the start, and reads the other workers' new
entries before judging each batch, so a partition taken over after a rebalance or a restart keeps its history.
A record seen again with its own `hw-source` (a batch replayed after a crash) is not a duplicate of itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from headwater import fields
from quality.suite import Rule
from quality.validator import PASS, Verdict
from streams.runtime.quality_log import TopicLog
from streams.runtime.records import Item


@dataclass(frozen=True)
class FirstSeen:
    source: str
    at_ms: int


def changelog_topic(pipeline: str) -> str:
    return f"_headwater.quality.{pipeline}.unique"


def _value_of(rule: Rule, item: Item) -> str | None:
    if rule.on_key:
        key = item.message.key
        return json.dumps([rule.name, key.hex()]) if key is not None else None
    values = [fields.get(item.record, fields.split(column)) for column in rule.columns]
    if any(value is None for value in values):  # GX leaves nulls out of uniqueness too
        return None
    return json.dumps([rule.name, values], default=str, separators=(",", ":"))


class UniqueTable:
    def __init__(self, rules: Sequence[Rule], horizon_ms: int, log: TopicLog | None) -> None:
        self.rules = list(rules)
        self.horizon_ms = horizon_ms
        self.log = log
        self._seen: dict[str, FirstSeen] = {}
        self._newest_ms = 0

    def _read(self, key: bytes, value: bytes | None) -> None:
        name = key.decode()
        if value is None:
            self._seen.pop(name, None)
            return
        entry = json.loads(value)
        if name not in self._seen:
            self._remember(name, FirstSeen(entry["s"], int(entry["t"])))

    def _remember(self, key: str, first: FirstSeen) -> None:
        self._seen[key] = first
        self._newest_ms = max(self._newest_ms, first.at_ms)

    def restore(self) -> None:
        if self.log is not None:
            self.log.catch_up(self._read)
        self._expire()

    def _expire(self) -> None:
        """Entries arrive roughly in time order, so the expired ones are at the front of the table."""
        limit = self._newest_ms - self.horizon_ms
        while self._seen:
            key = next(iter(self._seen))
            if self._seen[key].at_ms >= limit:
                break
            del self._seen[key]

    def judge(self, items: Sequence[Item]) -> list[Verdict]:
        """One verdict per item; each value seen for the first time becomes an entry written to the changelog."""
        if self.log is not None:
            self.log.catch_up(self._read)
        verdicts: list[Verdict] = []
        for item in items:
            blocking: list[str] = []
            warnings: list[str] = []
            notes: list[tuple[str, str]] = []
            stamp = item.message.timestamp_ms
            for rule in self.rules:
                key = _value_of(rule, item)
                if key is None:
                    continue
                first = self._seen.get(key)
                if first is not None and stamp - first.at_ms <= self.horizon_ms:
                    if first.source != item.message.source:
                        (blocking if rule.severity == "error" else warnings).append(rule.name)
                        notes.append((rule.name, f"duplicate of {first.source}"))
                    continue
                self._remember(key, FirstSeen(item.message.source, stamp))
                if self.log is not None:
                    self.log.write(key.encode(), json.dumps({"s": item.message.source, "t": stamp}).encode())
            verdicts.append(Verdict(tuple(blocking), tuple(warnings), tuple(notes)) if notes else PASS)
        if self.log is not None:
            self.log.flush()
        self._expire()
        return verdicts
