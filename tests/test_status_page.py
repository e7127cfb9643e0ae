"""The status page's figures without a browser: percentiles from histogram buckets as Prometheus computes them, and
`headwater ui` adding up the `/metrics` of several processes (lag per partition not doubled, a process that does not
answer listed as down), found from a running `headwater up`'s state file when no process is named."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pytest_httpserver import HTTPServer

from headwater.ports import free_port
from headwater.statuspage import snapshot
from headwater.statuspage.page import StatusPage
from headwater.statuspage.snapshot import histogram_quantile
from headwater.statuspage.targets import Targets, write_deployment
from tests.cli import headwater


def test_quantiles_interpolate_within_the_bucket_like_prometheus() -> None:
    buckets = {0.1: 50.0, 0.2: 100.0, math.inf: 100.0}
    assert histogram_quantile(0.5, buckets) == 0.1
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.05)
    assert histogram_quantile(0.99, {0.1: 0.0, 0.2: 0.0, math.inf: 10.0}) == 0.2  # beyond the last finite bound
    assert histogram_quantile(0.5, {0.1: 0.0, math.inf: 0.0}) is None


def test_every_metric_the_page_reads_is_one_the_processes_export() -> None:
    from prometheus_client import REGISTRY

    from connectors import metrics as connector_metrics  # noqa: F401  (defines its metrics on import)
    from streams.enrich import metrics as enrich_metrics  # noqa: F401
    from streams.runtime import metrics as runtime_metrics  # noqa: F401

    exported = {sample_name for family in REGISTRY.collect()
                for sample_name in (f"{family.name}_total", f"{family.name}_bucket", f"{family.name}_info",
                                    family.name)}
    read = {value for name, value in vars(snapshot).items() if name.isupper() and isinstance(value, str)}
    assert len(read) >= 17 and read <= exported, read - exported


def worker_metrics(records_in: int, lag: dict[int, int], latencies: list[float], calls: int) -> bytes:
    """What one pipeline worker's /metrics says: the real client library on a registry of its own."""
    registry = CollectorRegistry()
    records = Counter("headwater_pipeline_records_total", "", ["pipeline", "stage", "outcome"], registry=registry)
    records.labels("orders@1", "decode", "in").inc(records_in)
    records.labels("orders@1", "produce", "out").inc(records_in - 1)
    records.labels("orders@1", "quality", "dead_letter").inc(1)
    dead = Counter("headwater_pipeline_dead_letters_total", "", ["pipeline", "stage", "reason"], registry=registry)
    dead.labels("orders@1", "quality", "QualityFailed").inc(1)
    latency = Histogram("headwater_pipeline_end_to_end_latency_seconds", "", ["pipeline"], registry=registry,
                        buckets=(0.01, 0.1, 1))
    for seconds in latencies:
        latency.labels("orders@1").observe(seconds)
    Gauge("headwater_pipeline_assigned_partitions", "", ["pipeline"], registry=registry).labels("orders@1").set(
        len(lag))
    consumer_lag = Gauge("headwater_pipeline_consumer_lag_records", "", ["pipeline", "topic", "partition"],
                         registry=registry)
    for partition, behind in lag.items():
        consumer_lag.labels("orders@1", "erp.orders.raw", str(partition)).set(behind)
    enrich = Counter("headwater_enrich_calls_total", "", ["pipeline", "provider", "outcome"], registry=registry)
    enrich.labels("orders@1", "langid", "ok").inc(calls)
    connector = Counter("headwater_connector_records_total", "", ["connector", "outcome"], registry=registry)
    connector.labels("warehouse", "written").inc(records_in)
    return generate_latest(registry)


@pytest.fixture
def workers() -> Iterator[list[HTTPServer]]:
    servers = [HTTPServer(host="127.0.0.1", port=free_port()) for _ in range(2)]
    # Partition 1 moved from the second worker to the first: the second still reports its last (stale) figure.
    bodies = [worker_metrics(60, {0: 5, 1: 7}, [0.005] * 60, 6), worker_metrics(40, {1: 3}, [0.5] * 40, 4)]
    for server, body in zip(servers, bodies, strict=True):
        server.expect_request("/metrics").respond_with_data(body, content_type="text/plain; version=0.0.4")
        server.start()
    yield servers
    for server in servers:
        server.clear()
        server.stop()


async def test_ui_adds_up_the_workers_of_a_pipeline_and_lists_a_silent_one(workers: list[HTTPServer]) -> None:
    silent = f"127.0.0.1:{free_port()}"
    targets = Targets([server.url_for("/") for server in workers] + [silent])
    answer = await StatusPage("deployment", scrape=targets.scrape).answer()
    [pipeline] = answer["pipelines"]
    assert pipeline["name"] == "orders@1" and pipeline["state"] == "running"
    assert (pipeline["records_in"], pipeline["records_out"], pipeline["dead_letters"]) == (100, 98, 2)
    assert pipeline["dead_letter_reasons"] == [{"stage": "quality", "reason": "QualityFailed", "records": 2}]
    assert pipeline["lag"] == [{"topic": "erp.orders.raw", "partition": 0, "records": 5},
                               {"topic": "erp.orders.raw", "partition": 1, "records": 7}]
    # both workers' buckets merged: 60 observations under 10 ms, 40 between 100 ms and 1 s
    assert pipeline["latency_p50_ms"] == pytest.approx(10 * 50 / 60, abs=0.1)
    assert pipeline["latency_p99_ms"] == pytest.approx(100 + 900 * 39 / 40, abs=0.1)
    assert pipeline["enrichment"] == [{"provider": "langid", "calls": 10, "failed_calls": 0, "cache_hits": 0,
                                       "cost_usd": 0.0, "down": False}]
    assert answer["connectors"] == [{"name": "warehouse", "state": "unknown", "cursor": None, "produced": 0,
                                     "written": 100, "dead_letters": 0}]
    assert [(source["up"], source.get("error")) for source in answer["sources"]] == [
        (True, None), (True, None), (False, "ConnectError")
    ]


def test_ui_without_processes_or_a_running_up_says_what_to_do(tmp_path: Path) -> None:
    result = headwater("ui", "--data-dir", str(tmp_path), "--status-port", "0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: no processes to show: pass TARGETS, or start `headwater up` (it writes "
        f"{tmp_path / 'status-targets.json'})"
    ]


def test_ui_finds_the_processes_of_a_running_up(tmp_path: Path, workers: list[HTTPServer]) -> None:
    write_deployment(tmp_path, [workers[0].url_for("/metrics")], None)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "ui", "--data-dir", str(tmp_path), "--status-port", str(port),
         "--registry-url", f"http://127.0.0.1:{free_port()}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/status.json", timeout=5).json()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "headwater ui did not answer"
                time.sleep(0.1)
        assert [pipeline["records_in"] for pipeline in answer["pipelines"]] == [60]
        assert answer["registry"]["reachable"] is False  # a registry that does not answer is said, not fatal
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert page.status_code == 200 and "status.json" in page.text and "<script" in page.text
        assert "src=" not in page.text and "href=" not in page.text  # nothing fetched from elsewhere
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0


@pytest.mark.slow
@pytest.mark.timeout(600)  # `up` starts its own broker and registry, as the demo does
def test_up_serves_the_page_while_it_runs_and_keeps_it_with_keep(tmp_path: Path) -> None:
    records, port, log = 400, free_port(), tmp_path / "up.log"
    data_dir = tmp_path / "hw"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "up", "--records", str(records), "--rate", "200", "--no-llm",
             "--no-warehouse", "--data-dir", str(data_dir), "--status-port", str(port), "--keep"],
            stdout=output, stderr=subprocess.STDOUT, env={**os.environ},
        )
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 480
        while "status page stays on" not in log.read_text(errors="replace"):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/status.json", timeout=5).json()
                seen.add(sum(pipeline["records_in"] for pipeline in answer["pipelines"]))
            except httpx.HTTPError:
                pass  # not listening yet
            time.sleep(0.1)
        kept = httpx.get(f"http://127.0.0.1:{port}/status.json", timeout=5).json()
        assert {pipeline["name"] for pipeline in kept["pipelines"]} == {"crm_contacts@1", "erp_orders@1"}
        assert sum(pipeline["records_in"] for pipeline in kept["pipelines"]) == records
        assert kept["registry"]["reachable"] and kept["registry"]["subjects"]
        assert any(0 < total < records for total in seen), sorted(seen)  # the page showed the run moving
        assert (data_dir / "status-targets.json").is_file()
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(120)
    assert returncode == 0, log.read_text(errors="replace")[-3000:]
    assert f"status page on http://127.0.0.1:{port}/" in log.read_text()
    assert not (data_dir / "status-targets.json").exists()
