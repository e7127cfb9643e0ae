"""The only place where Headwater builds Kafka clients.

confluent-kafka clients get every librdkafka property of the connection unchanged; aiokafka clients get the mapped
subset (`python_clients`). Producers are idempotent with `acks=all` and the Java client's murmur2 key hashing, and
are sized: `message.max.bytes` follows the largest `max.message.bytes` of the topics they write, so a record a topic
accepts is never refused by the client, and one it does not accept is refused at once as a permanent error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient

from headwater.envelope import HeaderList
from headwater.kafka.config import KafkaSettings
from headwater.kafka.errors import ProduceFailure, from_kafka_error
from headwater.kafka.python_clients import aiokafka_options

# Produce requests carry a batch header and the records' headers on top of the largest record.
REQUEST_HEADROOM = 64 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 1_048_588

# What every producer is, whatever the caller asks: ARCHITECTURE.md's delivery guarantees.
_PRODUCER_GUARANTEES: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "partitioner": "murmur2_random",
}
_PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "message.timeout.ms": 60_000,
}


class KafkaConfigError(ValueError):
    """librdkafka refused a property of the connection (unknown name or bad value); the message names it."""


class AuthenticationFailed(KafkaConfigError):
    """The cluster refused the connection's credentials or TLS settings: a wrong password does not heal by
    retrying, so start-up ends at once with the broker's reason (which never holds the password)."""


# librdkafka's codes for a refused SASL login and a failed TLS handshake (bad CA, wrong host in the certificate).
_REFUSED_CODES = frozenset({KafkaError._AUTHENTICATION, KafkaError._SSL})


class Refusals:
    """An `error_cb` that remembers the first error saying the cluster refused these credentials or TLS settings."""

    def __init__(self) -> None:
        self.first: KafkaError | None = None

    def __call__(self, error: KafkaError) -> None:
        if self.first is None and error.code() in _REFUSED_CODES:
            self.first = error

    def raise_first(self, kafka: KafkaSettings) -> None:
        if self.first is None:
            return
        who = f" as {kafka.sasl_username} ({kafka.sasl_mechanism})" if kafka.sasl_username else ""
        raise AuthenticationFailed(
            f"kafka {kafka.bootstrap_servers} refused the {kafka.security_protocol} connection{who}: "
            f"{self.first.str()}"
        )


def _build(factory: Callable[[dict[str, Any]], Any], config: dict[str, Any]) -> Any:
    try:
        return factory(config)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        text = error.str() if isinstance(error, KafkaError) else str(error)
        raise KafkaConfigError(f"kafka settings refused by librdkafka: {text}") from None


def producer(
    kafka: KafkaSettings, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, **overrides: Any
) -> Producer:
    """An idempotent, `acks=all`, murmur2 confluent-kafka producer for records up to `max_message_bytes`."""
    config = {
        **_PRODUCER_DEFAULTS,
        **kafka.properties(),
        **overrides,
        **_PRODUCER_GUARANTEES,
        "message.max.bytes": max_message_bytes + REQUEST_HEADROOM,
    }
    config["batch.size"] = min(int(config["batch.size"]), max_message_bytes)
    built: Producer = _build(Producer, config)
    return built


def transactional_producer(kafka: KafkaSettings, transactional_id: str, **overrides: Any) -> Producer:
    """A producer under a fixed `transactional.id`: a newer one with the same id fences every older one."""
    overrides["transactional.id"] = transactional_id
    return producer(kafka, **overrides)


def consumer(kafka: KafkaSettings, group_id: str, **overrides: Any) -> Consumer:
    """A confluent-kafka consumer in `group_id`; offsets are committed by the caller unless it says otherwise."""
    config = {
        **kafka.properties(),
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **overrides,
    }
    built: Consumer = _build(Consumer, config)
    return built


def admin(kafka: KafkaSettings, **overrides: Any) -> AdminClient:
    built: AdminClient = _build(AdminClient, {**kafka.properties(), **overrides})
    return built


def aiokafka_producer(kafka: KafkaSettings, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                      **overrides: Any) -> AIOKafkaProducer:
    """aiokafka's producer with the same guarantees as `producer` (idempotent, acks=all, murmur2 by default)."""
    return AIOKafkaProducer(
        **aiokafka_options(kafka),
        **overrides,
        acks="all",
        enable_idempotence=True,
        max_request_size=max_message_bytes + REQUEST_HEADROOM,
    )


def aiokafka_consumer(kafka: KafkaSettings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(*topics, **aiokafka_options(kafka), **overrides)


DeliveryCallback = Callable[[ProduceFailure | None, Message | None], None]


def send(
    client: Producer,
    topic: str,
    value: bytes | None,
    key: bytes | None,
    headers: HeaderList | None,
    on_delivery: DeliveryCallback,
    stop: threading.Event | None = None,
) -> None:
    """`produce()` that waits for room in a full queue and reports every failure through `on_delivery`.

    librdkafka refuses some records inside `produce()` itself (larger than `message.max.bytes`, unknown topic):
    those reach `on_delivery` classified, like failures reported by the broker, instead of raising into the caller.
    A full queue is waited on (delivery reports free it) unless `stop` is set, which reports a retriable failure.
    """

    def delivered(error: KafkaError | None, message: Message) -> None:
        on_delivery(None if error is None else from_kafka_error(error), message)

    while True:
        try:
            client.produce(topic, value=value, key=key, headers=cast(Any, headers), on_delivery=delivered)
            return
        except BufferError:
            if stop is not None and stop.is_set():
                on_delivery(ProduceFailure("local queue full while stopping", permanent=False), None)
                return
            client.poll(0.05)
        except KafkaException as exc:
            error = exc.args[0]
            on_delivery(from_kafka_error(error), None)
            return
