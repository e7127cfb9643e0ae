"""The OpenLineage runs of pipelines: a pipeline reads its input topics and writes its output and dead-letter
topics, each with the schema the registry has for it."""

from __future__ import annotations

from collections.abc import Sequence

from headwater.openlineage import LineageRun
from headwater.settings import HeadwaterSettings
from schemas.client import registry_client
from schemas.datasets import topic_dataset
from streams.runtime.config import PipelineConfig


def pipeline_runs(configs: Sequence[PipelineConfig], settings: HeadwaterSettings) -> list[LineageRun]:
    client = registry_client(settings.registry)
    bootstrap = settings.kafka.bootstrap_servers

    def run_of(config: PipelineConfig) -> LineageRun:
        outputs = [config.output.topic, *([config.dead_letter_topic] if config.dead_letter_topic else [])]
        return LineageRun(
            job=config.name,
            inputs=lambda: [topic_dataset(client, bootstrap, topic) for topic in config.input.topics],
            outputs=lambda: [topic_dataset(client, bootstrap, topic) for topic in outputs],
        )

    return [run_of(config) for config in configs]
