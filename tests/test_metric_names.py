"""Every Prometheus metric Headwater registers is named per ARCHITECTURE.md, `headwater_<part>_<what>_<unit>`:
counters end in `_total` (after their unit, if any), histograms are in seconds, gauges count something named by
their unit or are one of the listed 0/1 states."""

from __future__ import annotations

import re

from prometheus_client import REGISTRY

import connectors.metrics
import streams.enrich.metrics
import streams.runtime.metrics
import streams.runtime.quality_reports

PARTS = ("pipeline", "connector", "enrich", "quality")
GAUGE_UNITS = ("records", "partitions", "usd")
# Gauges that are 1 or 0 (a state, not a quantity), so they have no unit; their help says what 1 means.
STATES = {"headwater_pipeline_waiting_for_dependency", "headwater_enrich_provider_down", "headwater_connector_running",
          "headwater_quality_expectation_success"}
# Info metrics carry a value that is text (a label of one series valued 1), shown on the status page.
INFOS = {"headwater_connector_cursor"}
MODULES = (streams.runtime.metrics, connectors.metrics, streams.enrich.metrics, streams.runtime.quality_reports)


def headwater_metrics() -> dict[str, str]:
    """Name -> type of every registered Headwater metric (a counter under its exposed `_total` name)."""
    found: dict[str, str] = {}
    for family in REGISTRY.collect():
        if family.name.startswith("headwater_"):
            found[family.name + ("_total" if family.type == "counter" else "")] = family.type
    return found


def test_every_metric_follows_the_naming_convention() -> None:
    found = headwater_metrics()
    assert len(found) >= 14, found  # every module above registered its metrics
    pattern = re.compile(rf"^headwater_({'|'.join(PARTS)})_[a-z][a-z0-9_]*[a-z]$")
    for name, kind in found.items():
        assert pattern.match(name), name
        if kind == "counter":
            assert name.endswith("_total"), name
        elif kind == "histogram":
            assert name.endswith("_seconds"), name
        elif kind == "info":
            assert name in INFOS, name
        else:
            counted = name.endswith(tuple(f"_{unit}" for unit in GAUGE_UNITS))
            assert kind == "gauge" and (counted or name in STATES), name


def test_the_series_the_status_page_and_dashboard_read_are_named_as_the_conventions_say() -> None:
    found = headwater_metrics()
    assert found["headwater_pipeline_records_total"] == "counter"
    assert found["headwater_pipeline_consumer_lag_records"] == "gauge"
    assert found["headwater_pipeline_batch_duration_seconds"] == "histogram"
    assert found["headwater_enrich_cost_usd_total"] == "counter"
    # By label name: a metric with other labels refuses these.
    streams.runtime.metrics.CONSUMER_LAG.labels(pipeline="p@1", topic="a.b.raw", partition="0").set(3)
    streams.runtime.metrics.CONSUMER_LAG.remove("p@1", "a.b.raw", "0")
    streams.runtime.metrics.RECORDS.labels(pipeline="p@1", stage="decode", outcome="in")
    streams.runtime.metrics.RECORDS.remove("p@1", "decode", "in")
