"""bench/pipeline.py keeps working: its --smoke mode runs every scenario (Headwater on both runtimes, with and
without enrichment, quality and the cache, Quix Streams, the paced latency runs) on the session's broker and
registry, and prints rates, ratios, the per-step profile and the targets line (the full run is a benchmark)."""

from __future__ import annotations

import re

import pytest

from tests.bench_support import run_smoke
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService


@pytest.mark.timeout(900)
def test_pipeline_benchmark_smoke_prints_every_scenario_and_the_profile(
    kafka: KafkaService, registry: RegistryService
) -> None:
    stdout = run_smoke("pipeline.py", "--bootstrap-servers", kafka.bootstrap, "--registry-url", registry.url,
                       timeout_s=900)
    rates = dict(re.findall(r"([a-z+'1]+)=([\d,]+)", stdout.split("records/s: ", 1)[1].splitlines()[0]))
    assert set(rates) == {"a", "b", "b1", "b+cache", "f", "d", "e", "c", "c'"}, stdout
    assert all(int(rate.replace(",", "")) > 0 for rate in rates.values()), rates
    profile = re.search(r"\(b\) consume=[\d,]+ decode=[\d,]+ enrich=[\d,]+ quality=[\d,]+ encode=[\d,]+ "
                        r"deliver=[\d,]+ commit=[\d,]+", stdout)
    assert profile is not None, stdout
    assert re.search(r"\(b\) end-to-end latency at [\d,]+ records/s over [\d,]+ outputs: p50=\d+ ms p99=\d+ ms",
                     stdout), stdout
    assert "targets: b >= 10,000/s" in stdout
