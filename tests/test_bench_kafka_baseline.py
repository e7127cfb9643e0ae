"""bench/kafka_baseline.py keeps working: its --smoke mode measures produce, consume and passthrough on the session's
broker and prints each rate with its ratio to produce."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.fixtures.kafka import KafkaService

BENCH = Path(__file__).parent.parent / "bench"


def test_kafka_baseline_smoke_prints_the_three_rates(kafka: KafkaService) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "kafka_baseline.py"), "--smoke", "--bootstrap-servers", kafka.bootstrap],
        capture_output=True, text=True, timeout=240, check=False, env={**os.environ, "PYTHONPATH": str(BENCH.parent)},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = dict(re.findall(r"^(produce|consume|passthrough) +[\d,]+ +[\d.]+ +(\d+\.\d+)$", result.stdout, re.M))
    assert set(rows) == {"produce", "consume", "passthrough"}, result.stdout
    assert float(rows["produce"]) == 1.0 and float(rows["passthrough"]) > 0
