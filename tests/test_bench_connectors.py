"""bench/connectors.py keeps working: its --smoke mode runs on the session's broker, registry and PostgreSQL and
prints every figure with its target or ratio (the full run is a benchmark, not a test)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.fixtures.kafka import KafkaService
from tests.fixtures.postgres import PostgresService
from tests.fixtures.registry import RegistryService

BENCH = Path(__file__).parent.parent / "bench"
FIGURES = [
    r"PostgreSQL sink \(COPY \+ upsert\) +: +[\d,]+ rows/s +target 50,000",
    r"PostgreSQL naive executemany +: +[\d,]+ rows/s +ratio sink/naive (\d+\.\d+)x",
    r"DuckDB sink \(Arrow \+ upsert\) +: +[\d,]+ rows/s +target 100,000",
    r"DuckDB naive executemany +: +[\d,]+ rows/s +ratio sink/naive (\d+\.\d+)x",
    r"SQL source \(PostgreSQL -> topic\) +: +[\d,]+ rows/s +target 20,000; plain SELECT fetch [\d,]+ rows/s, "
    r"ratio (\d+\.\d+)",
]


def test_connector_benchmark_smoke_prints_every_figure(
    kafka: KafkaService, registry: RegistryService, postgres: PostgresService
) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "connectors.py"), "--smoke", "--profile", "--bootstrap-servers",
         kafka.bootstrap, "--registry-url", registry.url, "--dsn", postgres.dsn],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "PYTHONPATH": str(BENCH.parent)},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    for figure in FIGURES:
        found = re.search(figure, result.stdout)
        assert found is not None, f"{figure!r} not in:\n{result.stdout}"
        assert all(float(ratio) > 0 for ratio in found.groups())
    assert "=== profile: PostgreSQL sink" in result.stdout
    with postgres.connect() as conn:  # the benchmark's database is dropped
        left = conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'bench_%'").fetchone()
    assert left == (0,)
