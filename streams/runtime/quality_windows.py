"""Tumbling windows across micro-batches, for the aggregate expectations of a suite.

A window holds, of each record that passed the record-level checks, only the columns the aggregate expectations
read, plus where the record came from. `records: N` closes a window at exactly N records (a batch may close one and
open the next); `seconds: S` windows are aligned on multiples of S of the records' timestamps and one closes when
the first record past its end arrives (so a quiet stream keeps its last window open until it moves on).
Windows live in the worker's memory: after a restart or a rebalance a window starts afresh.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from headwater import fields
from streams.runtime.records import Item


@dataclass
class Window:
    """Rows and bounds of one window: `start_ms`/`end_ms` are its time bounds (the records' timestamps seen, for a
    count window), `offsets` the first and last input offset per `topic/partition`."""

    size_kind: str
    size: float
    start_ms: int | None = None
    end_ms: int | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    offsets: dict[str, list[int]] = field(default_factory=dict)
    opened_at: float = field(default_factory=time.time)

    def add(self, item: Item, columns: Sequence[str]) -> None:
        message = item.message
        self.rows.append({column: fields.get(item.record, fields.split(column)) for column in columns})
        span = self.offsets.setdefault(f"{message.topic}/{message.partition}", [message.offset, message.offset])
        span[0], span[1] = min(span[0], message.offset), max(span[1], message.offset)
        if self.size_kind == "records":
            stamp = message.timestamp_ms
            self.start_ms = stamp if self.start_ms is None else min(self.start_ms, stamp)
            self.end_ms = stamp if self.end_ms is None else max(self.end_ms, stamp)


class TumblingWindows:
    def __init__(self, columns: Sequence[str], records: int | None = None, seconds: float | None = None) -> None:
        assert (records is None) != (seconds is None), "a window is records: N or seconds: S"
        self.columns = list(columns)
        self.records = records
        self.span_ms = int(seconds * 1000) if seconds is not None else None
        self.current = self._open(None)
        self._highest: dict[tuple[str, int], int] = {}

    def _open(self, stamp_ms: int | None) -> Window:
        if self.span_ms is None:
            return Window("records", float(self.records or 0))
        window = Window("seconds", self.span_ms / 1000)
        if stamp_ms is not None:
            window.start_ms = stamp_ms - stamp_ms % self.span_ms
            window.end_ms = window.start_ms + self.span_ms
        return window

    def add(self, items: Sequence[Item]) -> list[Window]:
        """Add a batch's records in order; the windows they closed. A record at or below an offset already added
        from its partition is left out: a batch retried after a failed write must not count twice."""
        closed: list[Window] = []
        for item in items:
            position = (item.message.topic, item.message.partition)
            if item.message.offset <= self._highest.get(position, -1):
                continue
            self._highest[position] = item.message.offset
            stamp = item.message.timestamp_ms
            if self.span_ms is not None:
                if self.current.end_ms is None:
                    self.current = self._open(stamp)
                elif stamp >= self.current.end_ms:
                    closed.append(self.current)
                    self.current = self._open(stamp)
            self.current.add(item, self.columns)
            if self.records is not None and len(self.current.rows) >= self.records:
                closed.append(self.current)
                self.current = self._open(None)
        return closed
