"""`on_fail: pause`: a failed error-severity aggregate stops the pipeline's consumption until a person resumes it.

The pause is a control record on `_headwater.quality.control` (compacted, one partition), keyed by pipeline name,
value `{"state": "paused"|"running", ...}`. Every worker of every process reads that topic, so the worker whose
window failed pauses all the others, `headwater quality resume PIPELINE` reaches them all wherever they run, and a
pipeline restarted while paused stays paused: the state outlives processes and needs nothing besides Kafka.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime

from confluent_kafka import Producer

from headwater.kafka import clients
from headwater.kafka.config import KafkaSettings
from streams.runtime.quality_log import TopicLog, ensure

log = logging.getLogger(__name__)
CONTROL_TOPIC = "_headwater.quality.control"
_WAIT_S = 0.5


def control_record(state: str, reason: str) -> bytes:
    return json.dumps({"state": state, "reason": reason, "at": datetime.now(UTC).isoformat()}).encode()


def ensure_control_topic(kafka: KafkaSettings) -> None:
    ensure(kafka, CONTROL_TOPIC, {})


def resume(kafka: KafkaSettings, pipeline: str, reason: str = "resumed by headwater quality resume") -> None:
    """Write the `running` control record every paused worker of `pipeline` is waiting for."""
    ensure_control_topic(kafka)
    producer = clients.producer(kafka)
    failures: list[str] = []
    producer.produce(CONTROL_TOPIC, control_record("running", reason), pipeline.encode(),
                     on_delivery=lambda error, _message: failures.append(str(error)) if error else None)
    producer.flush(30)
    if failures:
        raise RuntimeError(f"could not write the resume of {pipeline} to {CONTROL_TOPIC}: {failures[0]}")


class PauseGate:
    def __init__(self, kafka: KafkaSettings, pipeline: str, group: str, producer: Producer) -> None:
        ensure_control_topic(kafka)
        self.pipeline = pipeline
        self.paused = False
        self._log = TopicLog(kafka, CONTROL_TOPIC, f"{group}.quality-control", producer)
        self._log.catch_up(self._read)
        if self.paused:
            log.warning("event=quality_paused_at_start pipeline=%s", pipeline)

    def _read(self, key: bytes, value: bytes | None) -> None:
        if key.decode() == self.pipeline and value is not None:
            self.paused = json.loads(value).get("state") == "paused"

    def pause(self, reason: str) -> None:
        self._log.write(self.pipeline.encode(), control_record("paused", reason))
        self._log.flush()
        self.paused = True
        log.error("event=quality_paused pipeline=%s reason=%s resume=\"headwater quality resume %s\"",
                  self.pipeline, reason, self.pipeline)

    async def resumed(self, stop: asyncio.Event) -> bool:
        """Return once the pipeline is not paused (True), or once `stop` is set (False)."""
        await asyncio.to_thread(self._log.poll, self._read)
        while self.paused:
            if stop.is_set():
                return False
            await asyncio.to_thread(self._log.wait, self._read, _WAIT_S)
            if not self.paused:
                log.info("event=quality_resumed pipeline=%s", self.pipeline)
        return not stop.is_set()

    def close(self) -> None:
        self._log.close()
