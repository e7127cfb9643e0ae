"""bench/kafka_baseline.py keeps working: its --smoke mode measures produce, consume and passthrough on the session's
broker and prints each rate with its ratio to produce."""

from __future__ import annotations

import re

from tests.bench_support import run_smoke
from tests.fixtures.kafka import KafkaService


def test_kafka_baseline_smoke_prints_the_three_rates(kafka: KafkaService) -> None:
    stdout = run_smoke("kafka_baseline.py", "--bootstrap-servers", kafka.bootstrap, timeout_s=240)
    rows = dict(re.findall(r"^(produce|consume|passthrough) +[\d,]+ +[\d.]+ +(\d+\.\d+)$", stdout, re.M))
    assert set(rows) == {"produce", "consume", "passthrough"}, stdout
    assert float(rows["produce"]) == 1.0 and float(rows["passthrough"]) > 0
