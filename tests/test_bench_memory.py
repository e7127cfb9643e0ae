"""bench/memory.py keeps working: its --smoke mode measures a real `headwater run` worker's RSS at two marks on the
session's broker and registry and prints the ratio (the 100,000 / 1,000,000 run itself is a benchmark, not a test)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService

BENCH = Path(__file__).parent.parent / "bench" / "memory.py"


def test_memory_benchmark_smoke_prints_the_rss_ratio(kafka: KafkaService, registry: RegistryService) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--bootstrap-servers", kafka.bootstrap, "--registry-url", registry.url],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": str(BENCH.parent.parent)},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    rss = [float(value.replace(",", "")) for value in re.findall(r"RSS ([\d,.]+) MiB", result.stdout)]
    assert len(rss) == 2 and all(value > 20 for value in rss), result.stdout
    ratio = re.search(r"RSS ratio 10,000 / 2,000 records: (\d+\.\d+) \(target <= 1\.10 (met|MISSED)\)", result.stdout)
    assert ratio is not None, result.stdout
    assert abs(float(ratio.group(1)) - rss[1] / rss[0]) < 0.002
