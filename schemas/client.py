"""Build confluent-kafka's `SchemaRegistryClient` from Headwater's registry settings, and wait for it to answer."""

from __future__ import annotations

import logging
import threading

from confluent_kafka.schema_registry import SchemaRegistryClient

from headwater.dependencies import DependencyDown, backoff
from headwater.settings import RegistrySettings

log = logging.getLogger(__name__)


def registry_client(settings: RegistrySettings | None = None) -> SchemaRegistryClient:
    return SchemaRegistryClient((settings or RegistrySettings()).confluent())  # type: ignore[call-arg]


def wait_for_registry(
    client: SchemaRegistryClient, url: str, deadline: float = 300.0, halt: threading.Event | None = None
) -> None:
    def check() -> None:
        try:
            client.get_subjects()
        except Exception as exc:  # connection refused, timeouts and 5xx answers all mean "not there yet"
            log.warning("event=registry_unreachable url=%s error=%s", url, type(exc).__name__)
            raise DependencyDown(f"registry {url} unreachable") from exc

    backoff(deadline, halt)(check)
