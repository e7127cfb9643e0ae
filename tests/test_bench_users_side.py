"""bench/produce.py and bench/replay.py keep working: their --smoke modes run on the session's broker and registry
and print their ratios (the full runs are benchmarks, not tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService

BENCH = Path(__file__).parent.parent / "bench"


@pytest.mark.parametrize(("script", "ratio"), [
    ("produce.py", r"\(a\) headwater produce +[\d,]+ +(\d+\.\d+)"),
    ("replay.py", r"\(b\) headwater replay \(side topic\) +[\d,]+ +(\d+\.\d+)"),
])
def test_benchmark_smoke_prints_its_ratio(kafka: KafkaService, registry: RegistryService, script: str,
                                          ratio: str) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / script), "--smoke", "--bootstrap-servers", kafka.bootstrap,
         "--registry-url", registry.url],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "PYTHONPATH": str(BENCH.parent)},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    found = re.search(ratio, result.stdout)
    assert found is not None, result.stdout
    assert float(found[1]) > 0
