"""What the status page shows, computed from metric samples: one JSON-ready dict per pipeline and connector.

Samples of several processes (`headwater ui`) are summed per label set — counters and histogram buckets of the
workers of one pipeline add up — except the per-partition consumer lag, where a stale worker's figure after a
rebalance must not double the lag: the highest figure per partition wins.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from headwater.statuspage.samples import Sample

RECORDS = "headwater_pipeline_records_total"
DEAD_LETTERS = "headwater_pipeline_dead_letters_total"
LATENCY_BUCKET = "headwater_pipeline_end_to_end_latency_seconds_bucket"
ASSIGNED = "headwater_pipeline_assigned_partitions"
WAITING = "headwater_pipeline_waiting_for_dependency"
FAILURES = "headwater_pipeline_failures_total"
RETRIES = "headwater_pipeline_retries_total"
LAG = "headwater_pipeline_consumer_lag_records"
ENRICH_CALLS = "headwater_enrich_calls_total"
ENRICH_CACHE_HITS = "headwater_enrich_cache_hits_total"
ENRICH_COST = "headwater_enrich_cost_usd_total"
ENRICH_DOWN = "headwater_enrich_provider_down"
BUDGET_LIMIT = "headwater_enrich_budget_limit_usd"
BUDGET_SPENT = "headwater_enrich_budget_spent_usd"
CONNECTOR_RECORDS = "headwater_connector_records_total"
CONNECTOR_UP = "headwater_connector_running"
CONNECTOR_CURSOR = "headwater_connector_cursor_info"

Key = tuple[tuple[str, str], ...]


def _key(labels: dict[str, str], names: Iterable[str]) -> Key:
    return tuple((name, labels.get(name, "")) for name in names)


class _Table:
    """Samples summed per metric name and label set (the highest wins for `highest` metrics)."""

    def __init__(self, samples: Iterable[Sample], highest: frozenset[str] = frozenset({LAG})) -> None:
        self.values: dict[str, dict[Key, float]] = defaultdict(dict)
        for sample in samples:
            key = tuple(sorted(sample.labels.items()))
            rows = self.values[sample.name]
            if sample.name in highest:
                rows[key] = max(rows.get(key, -math.inf), sample.value)
            else:
                rows[key] = rows.get(key, 0.0) + sample.value

    def rows(self, name: str) -> list[tuple[dict[str, str], float]]:
        return [(dict(key), value) for key, value in self.values.get(name, {}).items()]

    def total(self, name: str, **match: str) -> float:
        return sum(value for labels, value in self.rows(name)
                   if all(labels.get(label) == wanted for label, wanted in match.items()))

    def label_values(self, name: str, label: str) -> set[str]:
        return {labels[label] for labels, _ in self.rows(name) if label in labels}


def histogram_quantile(quantile: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' `histogram_quantile` over cumulative `buckets` (upper bound -> count): linear within the bucket
    the quantile falls in; the highest finite bound when it falls in +Inf; None without observations."""
    bounds = sorted(buckets)
    total = buckets.get(math.inf, buckets[bounds[-1]] if bounds else 0.0)
    if total <= 0:
        return None
    rank = quantile * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _latency_ms(table: _Table, pipeline: str, quantile: float) -> float | None:
    buckets: dict[float, float] = defaultdict(float)
    for labels, value in table.rows(LATENCY_BUCKET):
        if labels.get("pipeline") == pipeline:
            buckets[float(labels["le"])] += value
    seconds = histogram_quantile(quantile, dict(buckets))
    return None if seconds is None else round(seconds * 1000, 1)


def _state(table: _Table, pipeline: str) -> str:
    if table.total(FAILURES, pipeline=pipeline) > 0:
        return "failed"
    if table.total(WAITING, pipeline=pipeline) > 0:
        return "waiting"
    if table.total(ASSIGNED, pipeline=pipeline) > 0:
        return "running"
    return "idle"


def _enrichment(table: _Table, pipeline: str) -> list[dict[str, Any]]:
    providers = {labels["provider"] for name in (ENRICH_CALLS, ENRICH_CACHE_HITS, ENRICH_COST)
                 for labels, _ in table.rows(name) if labels.get("pipeline") == pipeline}
    return [
        {
            "provider": provider,
            "calls": int(table.total(ENRICH_CALLS, pipeline=pipeline, provider=provider)),
            "failed_calls": int(table.total(ENRICH_CALLS, pipeline=pipeline, provider=provider)
                                - table.total(ENRICH_CALLS, pipeline=pipeline, provider=provider, outcome="ok")),
            "cache_hits": int(table.total(ENRICH_CACHE_HITS, pipeline=pipeline, provider=provider)),
            "cost_usd": table.total(ENRICH_COST, pipeline=pipeline, provider=provider),
            "down": table.total(ENRICH_DOWN, pipeline=pipeline, provider=provider) > 0,
        }
        for provider in sorted(providers)
    ]


def _budgets(table: _Table, pipeline: str) -> list[dict[str, Any]]:
    return [
        {"step": labels.get("step", ""), "window": labels.get("window", ""), "limit_usd": limit,
         "spent_usd": table.total(BUDGET_SPENT, pipeline=pipeline, step=labels.get("step", ""),
                                  window=labels.get("window", ""))}
        for labels, limit in sorted(table.rows(BUDGET_LIMIT), key=lambda row: sorted(row[0].items()))
        if labels.get("pipeline") == pipeline
    ]


def _pipeline(table: _Table, name: str) -> dict[str, Any]:
    reasons = [
        {"stage": labels.get("stage", ""), "reason": labels.get("reason", ""), "records": int(value)}
        for labels, value in table.rows(DEAD_LETTERS) if labels.get("pipeline") == name and value > 0
    ]
    lag = [
        {"topic": labels.get("topic", ""), "partition": int(labels.get("partition", "0")), "records": int(value)}
        for labels, value in table.rows(LAG) if labels.get("pipeline") == name
    ]
    return {
        "name": name,
        "state": _state(table, name),
        "records_in": int(table.total(RECORDS, pipeline=name, outcome="in")),
        "records_out": int(table.total(RECORDS, pipeline=name, outcome="out")),
        "dead_letters": int(table.total(RECORDS, pipeline=name, outcome="dead_letter")),
        "dead_letter_reasons": sorted(reasons, key=lambda row: (-row["records"], row["stage"], row["reason"])),
        "assigned_partitions": int(table.total(ASSIGNED, pipeline=name)),
        "retries": int(table.total(RETRIES, pipeline=name)),
        "latency_p50_ms": _latency_ms(table, name, 0.50),
        "latency_p99_ms": _latency_ms(table, name, 0.99),
        "lag": sorted(lag, key=lambda row: (row["topic"], row["partition"])) if lag else None,
        "enrichment": _enrichment(table, name),
        "cost_usd": table.total(ENRICH_COST, pipeline=name),
        "budgets": _budgets(table, name),
    }


def _connector(table: _Table, name: str) -> dict[str, Any]:
    cursors = [labels.get("cursor", "") for labels, value in table.rows(CONNECTOR_CURSOR)
               if labels.get("connector") == name and value > 0]
    running = [value for labels, value in table.rows(CONNECTOR_UP) if labels.get("connector") == name]
    return {
        "name": name,
        "state": ("running" if any(running) else "stopped") if running else "unknown",
        "cursor": cursors[0] if cursors else None,
        "produced": int(table.total(CONNECTOR_RECORDS, connector=name, outcome="produced")),
        "written": int(table.total(CONNECTOR_RECORDS, connector=name, outcome="written")),
        "dead_letters": int(table.total(CONNECTOR_RECORDS, connector=name, outcome="dead_letter")),
    }


def build_snapshot(samples: Iterable[Sample]) -> dict[str, Any]:
    """Pipelines and connectors as the status page shows them (the registry and the sources are added beside)."""
    table = _Table(samples)
    pipelines = set()
    for name in (RECORDS, ASSIGNED, WAITING, LATENCY_BUCKET):
        pipelines |= table.label_values(name, "pipeline")
    connectors = table.label_values(CONNECTOR_RECORDS, "connector") | table.label_values(CONNECTOR_UP, "connector")
    return {
        "pipelines": [_pipeline(table, name) for name in sorted(pipelines)],
        "connectors": [_connector(table, name) for name in sorted(connectors)],
    }
