"""Prometheus metrics of the connectors (names per ARCHITECTURE.md: headwater_<part>_<what>_<unit>)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import Counter, Gauge, Info

RECORDS = Counter(
    "headwater_connector_records_total",
    "Records by connector and outcome (produced and dead_letter for sources; written and dead_letter for sinks).",
    ["connector", "outcome"],
)
RUNNING = Gauge("headwater_connector_running", "1 while the connector's loop runs, 0 once it stopped.", ["connector"])
CURSOR = Info("headwater_connector_cursor", "The source cursor last committed (after the broker acknowledged).",
              ["connector"])
CURSOR_CHARS = 200  # a cursor is a few watermarks; the cap keeps an odd source from bloating every scrape


@contextmanager
def running(connector: str) -> Iterator[None]:
    """RUNNING is 1 for `connector` inside the block, 0 after it (however it ends)."""
    RUNNING.labels(connector).set(1)
    try:
        yield
    finally:
        RUNNING.labels(connector).set(0)


def committed(connector: str, cursor: dict[str, Any]) -> None:
    CURSOR.labels(connector).info({"cursor": json.dumps(cursor, sort_keys=True, default=str)[:CURSOR_CHARS]})
