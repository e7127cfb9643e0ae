"""bench/faust_take.py keeps working: its --smoke mode measures a raw confluent-kafka consumer and faust-streaming's
`noack_take` path (consume only, and with sends) on the session's broker and prints their ratios."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.fixtures.kafka import KafkaService

BENCH = Path(__file__).parent.parent / "bench"


def test_faust_take_smoke_prints_both_ratios(kafka: KafkaService) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "faust_take.py"), "--smoke", "--bootstrap-servers", kafka.bootstrap],
        capture_output=True, text=True, timeout=280, check=False, env={**os.environ, "PYTHONPATH": str(BENCH.parent)},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rates = re.findall(r"([\d,]+) records/s \(\d+\.\d+ of raw\)", result.stdout)
    assert len(rates) == 2 and all(int(rate.replace(",", "")) > 0 for rate in rates), result.stdout
