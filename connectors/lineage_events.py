"""The OpenLineage runs of connectors: a source reads its external system and writes topics; a sink reads topics
and writes tables (warehouse) or objects (S3)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from connectors.base import Connector, ConnectorError, Sink
from connectors.sinks.s3 import S3Sink
from connectors.sinks.warehouse import WarehouseSink
from headwater.openlineage import DatasetRef, LineageRun
from headwater.settings import HeadwaterSettings
from schemas.client import registry_client
from schemas.datasets import topic_dataset


def _topics_in(data: Any) -> Iterator[str]:
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "topic" or key.endswith("_topic"):
                if isinstance(value, str):
                    yield value
            elif key == "topics" and isinstance(value, list):
                yield from (item for item in value if isinstance(item, str))
            else:
                yield from _topics_in(value)
    elif isinstance(data, list):
        for item in data:
            yield from _topics_in(item)


def connector_topics(connector: Connector[Any]) -> list[str]:
    """The topics a connector's config names: what a sink drains or a source feeds."""
    return list(dict.fromkeys(_topics_in(connector.config.model_dump())))


def sink_outputs(sink: Sink[Any], topics: list[str]) -> list[DatasetRef]:
    """What a sink writes: one table per topic (with the columns the database has now) or the S3 prefixes."""
    if isinstance(sink, WarehouseSink):
        return [DatasetRef(sink.dataset_namespace, sink.dataset_name(sink.config.table_for(topic)),
                           tuple(_columns(sink, topic).items())) for topic in topics]
    if isinstance(sink, S3Sink):
        return [DatasetRef(sink.dataset_namespace, sink.dataset_name(topic)) for topic in topics]
    return []


def _columns(sink: WarehouseSink[Any], topic: str) -> dict[str, str]:
    try:
        return dict(sink.table_columns(topic) or {})
    except ConnectorError:  # the database is down: the event goes without a schema facet, the sink retries
        return {}


def refresh_outputs(run: LineageRun, connector: Connector[Any]) -> None:
    """A sink's tables as they are now (created or evolved while it ran), for its COMPLETE event."""
    if isinstance(connector, Sink):
        outputs = sink_outputs(connector, connector_topics(connector))
        run.outputs = lambda: outputs


def connector_run(connector: Connector[Any], settings: HeadwaterSettings) -> LineageRun:
    """The run of one connector. A sink's tables are read now, in the caller's thread, since the sink's database
    connection is not shared with the emitter's thread; topics' schemas are looked up when the event is built."""
    client = registry_client(settings.registry)
    bootstrap = settings.kafka.bootstrap_servers
    topics = connector_topics(connector)
    in_topics = lambda: [topic_dataset(client, bootstrap, topic) for topic in topics]  # noqa: E731
    if isinstance(connector, Sink):
        outputs = sink_outputs(connector, topics)
        return LineageRun(connector.name, in_topics, lambda: outputs)
    external = [DatasetRef(f"{type(connector).__name__.lower()}://{connector.name}", connector.name)]
    return LineageRun(connector.name, lambda: external, in_topics)
