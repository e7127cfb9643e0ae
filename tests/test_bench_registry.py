"""bench/registry.py keeps working: its --smoke mode measures GET /schemas/ids/{id} paced at 2,000 req/s against
the session's registry and prints p50/p99 and the ratio to /healthz under the same load (the full run is a
benchmark, not a test, so the 5 ms target is not asserted here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.fixtures.registry import RegistryService

BENCH = Path(__file__).parent.parent / "bench"


def test_registry_benchmark_smoke_prints_paced_latency_and_ratio(registry: RegistryService) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "registry.py"), "--smoke", "--registry-url", registry.url],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": str(BENCH.parent)},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    paced = re.search(r"ids, paced at 2,000 req/s +([\d,]+) req/s +p50 +([\d.]+) ms +p99 +([\d.]+) ms +errors (\d+)",
                      result.stdout)
    assert paced is not None, result.stdout
    assert int(paced[4]) == 0, "every id answered 200"
    assert float(paced[2]) > 0 and float(paced[3]) >= float(paced[2])
    ratio = re.search(r"ratio ids/healthz p99 \(paced\): (\d+\.\d+)", result.stdout)
    assert ratio is not None and float(ratio[1]) > 0, result.stdout
    assert "machine load average" in result.stdout
