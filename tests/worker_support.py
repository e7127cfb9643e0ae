"""Helpers of the tests that run `headwater run` as a real process: start it, read what it wrote as the topics grow,
read its committed offsets and its status endpoints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

HEADWATER = str(Path(sys.executable).parent / "headwater")
REPO = Path(__file__).parent.parent
_STATUS_URL = re.compile(r"event=status_server_started url=(\S+)")


class Collector:
    """Reads output and dead-letter topics as they grow: hw-source -> keys seen."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"collect-{uuid.uuid4().hex}",
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        self.consumer.subscribe(topics)
        self.seen: dict[str, list[bytes | None]] = defaultdict(list)
        self.total = 0
        self.log: Path | None = None

    def poll_until(
        self, condition: Callable[[], bool], limit_s: float, process: subprocess.Popen[bytes] | None = None
    ) -> None:
        deadline = time.monotonic() + limit_s
        while not condition():
            assert time.monotonic() < deadline, f"condition not reached; seen {len(self.seen)} sources"
            if process is not None:
                assert process.poll() is None, f"worker exited early with {process.returncode}: {self.log_tail()}"
            self.collect()

    def collect(self) -> None:
        """One read of whatever arrived (up to 500 records, at most 0.2 s)."""
        for message in self.consumer.consume(500, 0.2):
            if message.error() is None:
                headers = dict(message.headers() or [])
                self.seen[headers["hw-source"].decode()].append(message.key())
                self.total += 1

    def log_tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log is not None and self.log.exists() else ""

    def close(self) -> None:
        self.consumer.close()


def start_worker(
    pipeline: Path, bootstrap: str, registry_url: str, log: Path, runtime: str, *extra: str
) -> subprocess.Popen[bytes]:
    """`headwater run` on one pipeline, its output appended to `log`, status endpoints on any free port."""
    with log.open("ab") as output:
        return subprocess.Popen(
            [HEADWATER, "run", str(pipeline), "--bootstrap-servers", bootstrap, "--registry-url", registry_url,
             "--status-port", "0", "--session-timeout-ms", "6000", "--runtime", runtime, *extra],
            stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)},
        )


def stop_all(*processes: subprocess.Popen[bytes] | None) -> None:
    """Kill whatever a test started and did not stop itself (a failed assertion left it running)."""
    for process in processes:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex}"})
    try:
        return {p: int(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
                for p in range(partitions)}
    finally:
        consumer.close()


def consumer_group(pipeline: Path) -> str:
    return next(line.split(": ", 1)[1] for line in pipeline.read_text().splitlines()
                if line.startswith("consumer_group"))


def status_url(log: Path, after: int = 0) -> str | None:
    """The status server's URL that a worker logged (the last one after byte `after` of the log)."""
    found = _STATUS_URL.findall(log.read_text()[after:]) if log.exists() else []
    return found[-1] if found else None


def wait_until(condition: Callable[[], bool], limit_s: float, what: str,
               process: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    """Poll `condition` until true; fail naming `what` (and the log's tail) at the deadline or if `process` died."""
    deadline = time.monotonic() + limit_s
    while not condition():
        tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
        assert time.monotonic() < deadline, f"{what} not reached within {limit_s:.0f}s: {tail}"
        if process is not None:
            assert process.poll() is None, f"worker exited with {process.returncode} before {what}: {tail}"
        time.sleep(0.1)
