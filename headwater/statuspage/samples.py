"""Metric samples as flat (name, labels, value) triples, from this process's registry or a scraped `/metrics`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def _flatten(families: Iterable[Metric]) -> list[Sample]:
    return [Sample(sample.name, dict(sample.labels), float(sample.value))
            for family in families for sample in family.samples]


def local_samples(registry: CollectorRegistry = REGISTRY) -> list[Sample]:
    """Every sample of `registry` (this process's by default) as it is now."""
    return _flatten(registry.collect())


def parse_exposition(text: str) -> list[Sample]:
    """The samples of a Prometheus text exposition (a scraped `/metrics`); ValueError when it is not one."""
    return _flatten(text_string_to_metric_families(text))
