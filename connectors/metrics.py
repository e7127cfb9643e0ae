"""Prometheus metrics of the connectors (names per ARCHITECTURE.md: headwater_<part>_<what>_<unit>)."""

from __future__ import annotations

from prometheus_client import Counter

RECORDS = Counter(
    "headwater_connector_records_total",
    "Records by connector and outcome (produced and dead_letter for sources; written and dead_letter for sinks).",
    ["connector", "outcome"],
)
