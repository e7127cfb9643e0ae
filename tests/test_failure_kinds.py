"""Which exceptions out of a pipeline's stages are infrastructure failures (retried) and which are bugs (the worker
stops): the classification `batches.process` acts on, including the registry client's real connection error."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from headwater.dependencies import DependencyDown
from headwater.ports import free_port
from streams.enrich import ProviderUnavailable
from streams.runtime.failures import describe, is_infrastructure


def _registry_unreachable() -> Exception:
    client = SchemaRegistryClient({"url": f"http://127.0.0.1:{free_port()}"})
    try:
        client.get_schema(1)
    except Exception as exc:  # whatever the client raises when nothing listens is what process() sees
        return exc
    raise AssertionError("a registry answered on a free port")


@pytest.mark.parametrize("exc", [
    DependencyDown("registry http://x unreachable"),
    ProviderUnavailable("aws", "connection refused"),
    SchemaRegistryError(503, 50003, "Error while forwarding the request to the primary"),
    SchemaRegistryError(429, -1, "too many requests"),
    KafkaException(KafkaError(KafkaError._TRANSPORT, "broker down", retriable=True)),
])
def test_dependency_failures_are_retried(exc: Exception) -> None:
    assert is_infrastructure(exc)


def test_the_registry_client_refused_connection_is_retried() -> None:
    assert is_infrastructure(_registry_unreachable())


@pytest.mark.parametrize("exc", [
    TypeError("'NoneType' object is not iterable"),
    KeyError("email"),
    SchemaRegistryError(401, 40101, "Unauthorized"),
    KafkaException(KafkaError(KafkaError._INVALID_ARG, "bad config", retriable=False)),
])
def test_everything_else_is_a_bug(exc: Exception) -> None:
    assert not is_infrastructure(exc)


def test_description_is_one_bounded_line() -> None:
    text = describe(ValueError("first line\nsecond line " + "x" * 2000))
    assert text.startswith("ValueError: first line second line x") and "\n" not in text and len(text) <= 503
