"""librdkafka properties mapped for the pure-Python clients, aiokafka and Faust (which runs on aiokafka).

A property is mapped to its aiokafka equivalent, left out when it only tunes librdkafka's own sockets, logs and
statistics (aiokafka has no such knob and nothing changes in what is read or written), or refused: then the
client is not built and the error names the property, since silently dropping e.g. a Kerberos or OAuth setting
would connect differently from what the user configured.
"""

from __future__ import annotations

from typing import Any

import faust

from headwater.kafka.config import KafkaSettings

# Read by KafkaSettings itself (servers, security, TLS files) and mapped below or through `ssl_context`.
_MAPPED_BY_SETTINGS = frozenset({
    "bootstrap.servers", "security.protocol", "client.id", "sasl.mechanism", "sasl.username", "sasl.password",
    "ssl.ca.location", "ssl.ca.pem", "ssl.certificate.location", "ssl.key.location", "ssl.key.password",
    "ssl.endpoint.identification.algorithm", "enable.ssl.certificate.verification",
})
_RENAMED: dict[str, tuple[str, type[int] | type[str]]] = {
    "request.timeout.ms": ("request_timeout_ms", int),
    "metadata.max.age.ms": ("metadata_max_age_ms", int),
    "topic.metadata.refresh.interval.ms": ("metadata_max_age_ms", int),
    "retry.backoff.ms": ("retry_backoff_ms", int),
    "connections.max.idle.ms": ("connections_max_idle_ms", int),
}
_LIBRDKAFKA_ONLY_TUNING = frozenset({
    "socket.keepalive.enable", "socket.nagle.disable", "socket.timeout.ms", "socket.connection.setup.timeout.ms",
    "socket.send.buffer.bytes", "socket.receive.buffer.bytes", "socket.max.fails", "reconnect.backoff.ms",
    "reconnect.backoff.max.ms", "statistics.interval.ms", "log_level", "debug", "log.queue", "log.thread.name",
    "log.connection.close", "enabled_events", "broker.address.family", "broker.address.ttl", "api.version.request",
    "api.version.request.timeout.ms", "api.version.fallback.ms", "broker.version.fallback",
    "topic.metadata.refresh.sparse", "topic.metadata.refresh.fast.interval.ms", "topic.metadata.propagation.max.ms",
    "internal.termination.signal", "client.dns.lookup", "ssl.ca.certificate.stores",
})


class UnsupportedProperty(ValueError):
    """A librdkafka property that aiokafka (and so Faust) cannot honour."""

    def __init__(self, name: str, client: str) -> None:
        super().__init__(
            f"kafka property {name!r} has no equivalent in {client}; remove it or use a confluent-kafka based "
            "command (e.g. `headwater run --runtime direct`)"
        )
        self.property = name


def _mapped_extras(kafka: KafkaSettings, client: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for name, value in kafka.extra_properties().items():
        if name in _MAPPED_BY_SETTINGS or name in _LIBRDKAFKA_ONLY_TUNING:
            continue
        if name not in _RENAMED:
            raise UnsupportedProperty(name, client)
        keyword, convert = _RENAMED[name]
        kwargs[keyword] = convert(value)
    return kwargs


def aiokafka_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for aiokafka producers, consumers and admin clients."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": [server.strip() for server in kafka.bootstrap_servers.split(",")],
        "security_protocol": kafka.security_protocol,
        "client_id": kafka.client_id,
        **_mapped_extras(kafka, "aiokafka"),
    }
    if kafka.security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = kafka.sasl_mechanism or "PLAIN"
        kwargs["sasl_plain_username"] = kafka.sasl_username
        kwargs["sasl_plain_password"] = kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
    context = kafka.ssl_context()
    if context is not None:
        kwargs["ssl_context"] = context
    return kwargs


def faust_broker_options(kafka: KafkaSettings) -> dict[str, Any]:
    """The connection settings of a `faust.App`: broker URL, credentials and client id."""
    extras = _mapped_extras(kafka, "Faust")
    credentials: faust.SASLCredentials | faust.SSLCredentials | None = None
    context = kafka.ssl_context()
    if kafka.security_protocol.startswith("SASL"):
        credentials = faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
            ssl_context=context,
            mechanism=kafka.sasl_mechanism or "PLAIN",
        )
    elif context is not None:
        credentials = faust.SSLCredentials(context)
    options: dict[str, Any] = {
        "broker": ";".join(f"kafka://{server.strip()}" for server in kafka.bootstrap_servers.split(",")),
        "broker_client_id": kafka.client_id,
    }
    if credentials is not None:
        options["broker_credentials"] = credentials
    if "request_timeout_ms" in extras:
        options["broker_request_timeout"] = extras["request_timeout_ms"] / 1000
    return options
