"""bench/enrich.py keeps working: its --smoke mode runs every scenario on the session's broker and registry against
its fakes and prints each figure, and the replay from the cache makes no provider call."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService

BENCH = Path(__file__).parent.parent / "bench"


def test_enrichment_benchmark_smoke_prints_every_scenario(kafka: KafkaService, registry: RegistryService) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "enrich.py"), "--smoke", "--bootstrap-servers", kafka.bootstrap,
         "--registry-url", registry.url],
        capture_output=True, text=True, timeout=900, check=False,
        env={**os.environ, "PYTHONPATH": str(BENCH.parent)},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    for label in (r"\(L\) local-only", r"\(a\) aws_comprehend", r"\(b\) openai", r"\(c\) \(b\) replayed"):
        found = re.search(label + r".*? +([\d,]+) +(\d+\.\d+)", result.stdout)
        assert found is not None and float(found[2]) > 0, result.stdout
    assert "provider calls: 0)" in result.stdout
    assert re.search(r"\(d\) redaction .*? +\d+\.\dus", result.stdout), result.stdout
