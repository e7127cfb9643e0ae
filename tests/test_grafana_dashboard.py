"""deploy/grafana/headwater.json names only metrics that exist: a real pipeline (`headwater run`) and a real sink
connector (`headwater connect run`) process records on the session broker, and every metric each panel's PromQL (and
each variable's query) names is in what their live /metrics expose."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import httpx

from tests.connect_support import start_connect, write_config
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService
from tests.pipeline_support import contact, encoder, pipeline_file, produce_values
from tests.worker_support import REPO, start_worker, status_url, stop_all, wait_until

DASHBOARD = REPO / "deploy" / "grafana" / "headwater.json"
_METRIC = re.compile(r"\bheadwater_[a-z0-9_]+")
_TYPE = re.compile(r"^# TYPE (\S+) (\S+)$", re.M)
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", re.M)
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def queries(dashboard: dict[str, Any]) -> dict[str, str]:
    """Every PromQL of the dashboard by where it is: panel targets and template variables."""
    found = {f"panel {panel['title']!r} {target['refId']}": target["expr"]
             for panel in dashboard["panels"] for target in panel["targets"]}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found[f"variable {variable['name']}"] = variable["query"]["query"]
    return found


def exposed(text: str) -> tuple[set[str], set[str]]:
    """(names a query may use: declared families and their series, names that have a sample now)."""
    sampled = {name for name in _SAMPLE.findall(text)}
    declared = set(sampled)
    for name, kind in _TYPE.findall(text):
        declared.add(name)
        if kind == "histogram":
            declared.update(name + suffix for suffix in HISTOGRAM_SERIES)
    return declared, sampled


def scrape(url: str | None) -> str:
    if url is None:
        return ""
    try:
        return httpx.get(f"{url}/metrics", timeout=10).text
    except httpx.ConnectError:
        return ""


def test_the_dashboard_is_grafana_json_with_unique_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] == "headwater"
    assert all(panel["targets"] and panel["datasource"]["uid"] == "${datasource}" for panel in dashboard["panels"])


def test_every_metric_the_dashboard_queries_is_served_by_a_live_pipeline_and_connector(
    kafka: KafkaService, registry: RegistryService, tmp_path: Path
) -> None:
    raw = kafka.create_topic(partitions=2)
    enriched = raw.rsplit(".", 1)[0] + ".enriched"
    pipeline = pipeline_file(tmp_path, raw, quality=None, enrich=[{"provider": "flaky", "options": {}}])
    serializer = encoder(registry.client(), raw)
    produce_values(kafka.bootstrap, raw, [(f"C{n:06d}".encode(), serializer.encode(contact(n))) for n in range(20)])
    worker_log, connect_log = tmp_path / "worker.log", tmp_path / "connect.log"
    sink = write_config(tmp_path / "sink.yaml", kafka.bootstrap, registry.url, [
        {"name": "wh", "connector": "duckdb", "config": {"database": str(tmp_path / "w.duckdb"), "topics": [enriched]}},
    ])
    worker = start_worker(pipeline, kafka.bootstrap, registry.url, worker_log, "direct")
    connector = start_connect(sink, connect_log)
    try:
        def live() -> str:
            return scrape(status_url(worker_log)) + scrape(status_url(connect_log))

        needed = ("headwater_pipeline_records_total", "headwater_pipeline_consumer_lag_records",
                  "headwater_pipeline_batch_duration_seconds_bucket", "headwater_enrich_calls_total",
                  "headwater_connector_records_total")
        wait_until(lambda: set(needed) <= exposed(live())[1] and 'outcome="written"' in live(), 120,
                   "samples of the pipeline's and the connector's metrics", worker, worker_log)
        declared, _ = exposed(live())
        dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
        missing = {where: sorted(set(_METRIC.findall(expr)) - declared) for where, expr in queries(dashboard).items()}
        assert all(_METRIC.findall(expr) for expr in queries(dashboard).values())
        assert not {where: names for where, names in missing.items() if names}
        for process in (worker, connector):
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 0
    finally:
        stop_all(worker, connector)
