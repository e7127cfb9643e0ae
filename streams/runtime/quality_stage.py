"""The quality stage of a pipeline: record-level verdicts, uniqueness across the stream, windows and reports.

Per micro-batch: the record-level expectations in one GX call; the records they did not block are judged for
uniqueness against the changelog-backed table; the records still standing go into the current window, and each
window that closes is validated against the aggregate expectations in one GX call, reported on the quality topic
and counted. Aggregates never judge single records: a window that fails loads nothing less, it is reported (and
with `on_fail: pause` stops consumption). Without Kafka settings (a dry run) reports are kept, not written, and
uniqueness state lives only as long as the run.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from headwater.kafka import clients
from headwater.kafka.config import KafkaSettings
from quality.validator import PASS, QualityValidator, Verdict
from streams.runtime.config import PipelineConfig
from streams.runtime.quality_log import TopicLog, ensure
from streams.runtime.quality_pause import PauseGate
from streams.runtime.quality_reports import (
    ReportPublisher,
    count_records,
    count_window,
    log_failure,
    quality_topic,
    report,
)
from streams.runtime.quality_unique import UniqueTable, changelog_topic
from streams.runtime.quality_windows import TumblingWindows
from streams.runtime.records import Item

log = logging.getLogger(__name__)


class QualityStage:
    def __init__(self, config: PipelineConfig, validator: QualityValidator, kafka: KafkaSettings | None) -> None:
        assert config.quality is not None
        self.config = config
        self.validator = validator
        settings = config.quality
        validator.suite.check_window(settings.window is not None)
        self._names = [rule.name for rule in validator.rules if rule.kind != "aggregate"]
        self.reports: list[dict[str, Any]] = []  # only without Kafka: the dry run's, to show
        self._pending: list[dict[str, Any]] = []
        self.windows = (
            TumblingWindows(validator.window_columns, settings.window.records, settings.window.seconds)
            if validator.has_aggregates and settings.window is not None else None
        )
        # Kafka clients only for what the suite needs: a record-level suite alone writes nothing of its own.
        stateful = self.windows is not None or bool(validator.unique_rules)
        self._producer = clients.producer(kafka) if kafka is not None and stateful else None
        self.publisher: ReportPublisher | None = None
        self.gate: PauseGate | None = None
        self._logs: list[TopicLog] = []
        if kafka is not None and self._producer is not None and self.windows is not None:
            topic = quality_topic(config)
            ensure(kafka, topic, {"cleanup.policy": "delete"})
            self.publisher = ReportPublisher(self._producer, topic, config)
            if settings.on_fail == "pause":
                self.gate = PauseGate(kafka, config.name, config.group, self._producer)
        self.unique: UniqueTable | None = None
        if validator.unique_rules:
            changelog = None
            if kafka is not None and self._producer is not None:
                topic = changelog_topic(config.name)
                ensure(kafka, topic, {"cleanup.policy": "compact,delete", "retention.ms": str(settings.horizon_ms)})
                changelog = TopicLog(kafka, topic, f"{config.group}.quality-unique", self._producer)
                self._logs.append(changelog)
            self.unique = UniqueTable(validator.unique_rules, settings.horizon_ms, changelog)
            self.unique.restore()

    def judge(self, items: Sequence[Item]) -> list[Verdict]:
        """One verdict per item (blocking failures dead-letter it, warnings go to `hw-quality`)."""
        verdicts = self.validator.validate([item.record for item in items])
        if self.unique is not None:
            standing = [index for index, verdict in enumerate(verdicts) if not verdict.blocking]
            for index, extra in zip(standing, self.unique.judge([items[i] for i in standing]), strict=True):
                verdicts[index] = verdicts[index].merged(extra)
        failed = Counter(name for verdict in verdicts for name in (*verdict.blocking, *verdict.warnings))
        count_records(self.config.label, failed, self._names)
        if self.windows is not None:
            loaded = [item for item, verdict in zip(items, verdicts, strict=True) if not verdict.blocking]
            for window in self.windows.add(loaded):
                result = self.validator.validate_window(window.rows)
                count_window(self.config.label, result)
                body = report(self.config, window, result)
                log_failure(self.config, body)
                self._pending.append(body)
            self._publish()
        return [verdict if verdict.blocking or verdict.warnings else PASS for verdict in verdicts]

    def _publish(self) -> None:
        """Write the closed windows' reports (kept for the next batch if the broker refuses one), then pause if
        one failed an error-severity expectation and the pipeline says `on_fail: pause`."""
        while self._pending:
            body = self._pending[0]
            if self.publisher is not None:
                self.publisher.publish(body)
            else:
                self.reports.append(body)
            self._pending.pop(0)
            failed = [item["name"] for item in body["expectations"]
                      if not item["success"] and item["severity"] == "error"]
            if failed and self.gate is not None and not self.gate.paused:
                self.gate.pause(f"window failed {','.join(failed)}")

    async def resumed(self, stop: asyncio.Event) -> bool:
        """False once `stop` is set while the pipeline is paused; True when it may consume."""
        return await self.gate.resumed(stop) if self.gate is not None else True

    def close(self) -> None:
        for changelog in self._logs:
            changelog.close()
        if self.gate is not None:
            self.gate.close()
        if self._producer is not None:
            self._producer.flush(10)
