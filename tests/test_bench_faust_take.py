"""bench/faust_take.py keeps working: its --smoke mode measures a raw confluent-kafka consumer and faust-streaming's
`noack_take` path (consume only, and with sends) on the session's broker and prints their ratios."""

from __future__ import annotations

import re

from tests.bench_support import run_smoke
from tests.fixtures.kafka import KafkaService


def test_faust_take_smoke_prints_both_ratios(kafka: KafkaService) -> None:
    stdout = run_smoke("faust_take.py", "--bootstrap-servers", kafka.bootstrap, timeout_s=280)
    rates = re.findall(r"([\d,]+) records/s \(\d+\.\d+ of raw\)", stdout)
    assert len(rates) == 2 and all(int(rate.replace(",", "")) > 0 for rate in rates), stdout
