"""What a person reads of quality: the reports on a quality topic, rendered with GX's Data Docs, and a suite tried
on sample records before it goes live."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from headwater import fields
from headwater.kafka import clients
from headwater.kafka.config import KafkaSettings
from quality.validator import QualityValidator


class TopicMissing(LookupError):
    """The quality topic does not exist (no window has closed yet, or a wrong name)."""


def read_reports(kafka: KafkaSettings, topic: str, since: datetime | None) -> list[dict[str, Any]]:
    """Every report on `topic` (from `since` on), oldest first, read to the end offsets as they were on entry."""
    consumer = clients.consumer(kafka, "headwater-quality-report")
    try:
        found = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise TopicMissing(f"topic {topic} does not exist")
        partitions = [TopicPartition(topic, number, OFFSET_BEGINNING) for number in sorted(found.partitions)]
        if since is not None:
            stamp = int(since.timestamp() * 1000)
            partitions = consumer.offsets_for_times([TopicPartition(topic, p.partition, stamp) for p in partitions])
        ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in partitions}
        starts = {p.partition: p.offset for p in partitions}
        pending = {number for number, end in ends.items() if end > 0 and starts[number] != -1}
        consumer.assign([p for p in partitions if p.partition in pending])
        reports: list[tuple[int, dict[str, Any]]] = []
        while pending:
            messages = consumer.consume(500, 5.0)
            if not messages:
                break
            for message in messages:
                if message.error() is not None:
                    continue
                number, offset = message.partition() or 0, message.offset() or 0
                if offset >= ends[number]:
                    pending.discard(number)
                    continue
                reports.append((message.timestamp()[1], json.loads(message.value() or b"{}")))
                if offset + 1 >= ends[number]:
                    pending.discard(number)
        return [body for _, body in sorted(reports, key=lambda pair: pair[0])]
    finally:
        consumer.close()


def _validation_result(gx_result: Mapping[str, Any]) -> Any:
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    results = [
        ExpectationValidationResult(
            success=item["success"], result=item.get("result") or {}, exception_info=item.get("exception_info"),
            expectation_config=ExpectationConfiguration(
                type=item["expectation_config"]["type"], kwargs=item["expectation_config"]["kwargs"],
                meta=item["expectation_config"].get("meta"),
            ),
        )
        for item in gx_result.get("results", [])
    ]
    return ExpectationSuiteValidationResult(
        success=bool(gx_result.get("success")), results=results, suite_name=str(gx_result.get("suite_name")),
        statistics=gx_result.get("statistics") or {}, meta=gx_result.get("meta") or {},
    )


def render_html(reports: Sequence[Mapping[str, Any]], directory: Path) -> list[Path]:
    """One Data Docs validation page per window, plus an index linking them; the pages written."""
    from great_expectations.render.renderer.page_renderer import ValidationResultsPageRenderer
    from great_expectations.render.view.view import DefaultJinjaPageView

    directory.mkdir(parents=True, exist_ok=True)
    renderer, view = ValidationResultsPageRenderer(), DefaultJinjaPageView()
    pages: list[Path] = []
    links: list[str] = []
    for number, body in enumerate(reports, start=1):
        page = directory / f"window-{number:05d}.html"
        document = renderer.render(_validation_result(body["gx_result"]))
        page.write_text(view.render(document), encoding="utf-8")  # type: ignore[no-untyped-call]
        pages.append(page)
        verdict = "passed" if body.get("success") else "FAILED"
        links.append(f'<li><a href="{page.name}">{body["window"]["closed_at"]}</a> {body["pipeline"]} '
                     f'{body["window"]["records"]} records: {verdict}</li>')
    index = directory / "index.html"
    index.write_text(f"<html><body><h1>Quality windows</h1><ul>{''.join(links)}</ul></body></html>",
                     encoding="utf-8")
    return [index, *pages]


@dataclass
class CheckLine:
    """One expectation's verdict over the sample: the failing lines (1-based) or the observed value."""

    name: str
    kind: str
    severity: str
    success: bool
    lines: list[int] = field(default_factory=list)
    observed: Any = None


def check_sample(validator: QualityValidator, records: Sequence[Mapping[str, Any]]) -> list[CheckLine]:
    """The suite over sample records as a pipeline would judge them: record-level per line, uniqueness across the
    lines, aggregates over the whole sample as one window."""
    checked: dict[str, CheckLine] = {
        rule.name: CheckLine(rule.name, rule.kind, rule.severity, True) for rule in validator.rules
    }
    for line, verdict in enumerate(validator.validate(records), start=1):
        for name in (*verdict.blocking, *verdict.warnings):
            checked[name].lines.append(line)
    for rule in validator.unique_rules:
        seen: set[str] = set()
        for line, record in enumerate(records, start=1):
            values = [fields.get(record, fields.split(column)) for column in rule.columns]
            if any(value is None for value in values):
                continue
            value = json.dumps(values, default=str)
            if value in seen:
                checked[rule.name].lines.append(line)
            seen.add(value)
    if validator.has_aggregates and records:
        columns = validator.window_columns
        rows = [{column: fields.get(record, fields.split(column)) for column in columns} for record in records]
        result = validator.validate_window(rows)
        for outcome in result.outcomes:
            checked[outcome.name].success, checked[outcome.name].observed = outcome.success, outcome.observed_value
    for found in checked.values():
        if found.lines:
            found.success = False
    return list(checked.values())
