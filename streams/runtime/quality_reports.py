"""Quality reports: one JSON record per closed window on `<domain>.<entity>.quality`, plus the quality metrics.

The record's key is the pipeline name; its value holds the window's bounds and the input offsets it covered, the
verdict per expectation with its observed value, and the GX validation result itself (so Data Docs can render it).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Producer
from prometheus_client import Counter, Gauge

from headwater import envelope
from headwater.dependencies import DependencyDown
from quality.validator import WindowResult
from streams.runtime.config import PipelineConfig
from streams.runtime.quality_windows import Window

log = logging.getLogger(__name__)

EXPECTATION_SUCCESS = Gauge(
    "headwater_quality_expectation_success",
    "1 if the expectation passed on the last batch (record-level) or window (aggregate) judged, else 0.",
    ["pipeline", "expectation"],
)
UNEXPECTED = Counter(
    "headwater_quality_unexpected_total",
    "Records that failed a record-level or uniqueness expectation; windows that failed an aggregate one.",
    ["pipeline", "expectation"],
)


def quality_topic(config: PipelineConfig) -> str:
    domain, entity = config.output.topic.split(".")[:2]
    return f"{domain}.{entity}.quality"


def _iso(stamp_ms: int | None) -> str | None:
    return datetime.fromtimestamp(stamp_ms / 1000, UTC).isoformat() if stamp_ms is not None else None


def report(config: PipelineConfig, window: Window, result: WindowResult) -> dict[str, Any]:
    return {
        "pipeline": config.label,
        "success": result.success,
        "window": {
            "kind": window.size_kind,
            "size": int(window.size) if window.size_kind == "records" else window.size,
            "records": len(window.rows),
            "start": _iso(window.start_ms),
            "end": _iso(window.end_ms),
            "opened_at": datetime.fromtimestamp(window.opened_at, UTC).isoformat(),
            "closed_at": datetime.now(UTC).isoformat(),
        },
        "offsets": {source: {"first": span[0], "last": span[1]} for source, span in sorted(window.offsets.items())},
        "expectations": [
            {"name": outcome.name, "type": outcome.type, "severity": outcome.severity, "success": outcome.success,
             "observed_value": outcome.observed_value, "unexpected_count": outcome.unexpected_count}
            for outcome in result.outcomes
        ],
        "gx_result": result.gx_result,
    }


def count_records(label: str, failed: dict[str, int], names: list[str]) -> None:
    """Metrics of one batch's record-level and uniqueness verdicts: `failed` counts records per expectation."""
    for name in names:
        count = failed.get(name, 0)
        EXPECTATION_SUCCESS.labels(label, name).set(0 if count else 1)
        if count:
            UNEXPECTED.labels(label, name).inc(count)


def count_window(label: str, result: WindowResult) -> None:
    for outcome in result.outcomes:
        EXPECTATION_SUCCESS.labels(label, outcome.name).set(1 if outcome.success else 0)
        if not outcome.success:
            UNEXPECTED.labels(label, outcome.name).inc()


def log_failure(config: PipelineConfig, body: dict[str, Any]) -> None:
    """One event per window an error-severity aggregate failed (names and offsets only, no record contents)."""
    failed = [item["name"] for item in body["expectations"] if not item["success"] and item["severity"] == "error"]
    if failed:
        offsets = ",".join(f"{source}:{span['first']}-{span['last']}" for source, span in body["offsets"].items())
        log.error(
            "event=quality_window_failed pipeline=%s expectations=%s records=%d offsets=%s",
            config.label, ",".join(failed), body["window"]["records"], offsets,
        )


class ReportPublisher:
    """Writes reports with the pipeline's lineage headers and waits for the broker's acknowledgement."""

    def __init__(self, producer: Producer, topic: str, config: PipelineConfig) -> None:
        self.producer = producer
        self.topic = topic
        self.config = config

    def publish(self, body: dict[str, Any]) -> None:
        failures: list[str] = []

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(str(error))

        headers: list[tuple[str, str | bytes | None]] = [(envelope.PIPELINE, self.config.label.encode())]
        self.producer.produce(
            self.topic, json.dumps(body, default=str).encode(), self.config.name.encode(), headers=headers,
            on_delivery=delivered, timestamp=int(time.time() * 1000),
        )
        self.producer.flush(30)
        if failures:
            raise QualityWriteFailed(f"quality report to {self.topic} failed: {failures[0]}")


class QualityWriteFailed(DependencyDown):
    """The broker did not take a report, a uniqueness entry or a pause: the batch waits and is retried."""
