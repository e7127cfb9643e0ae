"""The Kafka layer: every librdkafka property reaches confluent-kafka unchanged, the Python clients get the mapped
subset or a one-line refusal naming the property, producers keep their guarantees and sizes, produce errors are
classified."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiokafka import errors as aiokafka_errors
from confluent_kafka import KafkaError

from headwater.kafka import clients
from headwater.kafka.config import KafkaSettings
from headwater.kafka.errors import from_exception, from_kafka_error
from headwater.kafka.python_clients import UnsupportedProperty, aiokafka_options, faust_broker_options
from headwater.settings import HeadwaterSettings, load_settings


def _settings_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "headwater.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_any_librdkafka_property_in_a_settings_file_reaches_confluent_kafka(tmp_path: Path) -> None:
    path = _settings_file(tmp_path, (
        "kafka:\n"
        "  bootstrap.servers: 127.0.0.1:1\n"
        "  ssl.endpoint.identification.algorithm: none\n"
        "  socket.keepalive.enable: true\n"
        "  client.id: x\n"
        "  log_level: 3\n"
    ))
    properties = load_settings(path).kafka.properties()
    assert properties["ssl.endpoint.identification.algorithm"] == "none"
    assert properties["socket.keepalive.enable"] == "true"
    assert properties["client.id"] == "x"
    assert properties["log_level"] == "3"
    clients.producer(load_settings(path).kafka).close()


def test_environment_overrides_a_file_property_by_its_underscore_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _settings_file(tmp_path, "kafka:\n  socket.keepalive.enable: false\n  client.id: from-file\n")
    monkeypatch.setenv("HEADWATER_KAFKA__SOCKET_KEEPALIVE_ENABLE", "true")
    properties = load_settings(path, kafka={"client.id": "from-flag"}).kafka.properties()
    assert properties["socket.keepalive.enable"] == "true"
    assert properties["client.id"] == "from-flag"


def test_an_unknown_property_is_refused_in_one_line_naming_it() -> None:
    kafka = KafkaSettings.model_validate({"no.such.property": "1"})
    with pytest.raises(clients.KafkaConfigError) as refused:
        clients.producer(kafka)
    assert "no.such.property" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_producers_keep_their_guarantees_whatever_the_settings_say() -> None:
    kafka = KafkaSettings.model_validate({"enable.idempotence": False, "acks": "1"})
    assert kafka.properties()["enable.idempotence"] == "false"
    producer = clients.producer(kafka, max_message_bytes=2_097_152)
    producer.close()
    config = {**clients._PRODUCER_DEFAULTS, **kafka.properties(), **clients._PRODUCER_GUARANTEES}
    assert config["enable.idempotence"] is True and config["acks"] == "all"
    assert config["partitioner"] == "murmur2_random"


def test_secrets_are_wrapped_and_redacted() -> None:
    kafka = KafkaSettings.model_validate({
        "security.protocol": "sasl_ssl", "sasl.mechanisms": "scram-sha-512", "sasl.username": "u",
        "sasl.password": "hunter2", "sasl.oauthbearer.client.secret": "s3cret",
    })
    assert kafka.security_protocol == "SASL_SSL"
    assert kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert "hunter2" not in repr(kafka) and "s3cret" not in repr(kafka)
    assert kafka.properties()["sasl.oauthbearer.client.secret"] == "s3cret"
    assert "hunter2" not in str(kafka.redacted()) and "s3cret" not in str(kafka.redacted())


def test_python_clients_get_the_mapped_subset() -> None:
    kafka = KafkaSettings.model_validate({
        "bootstrap.servers": "a:1,b:2", "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "u", "sasl.password": "p", "ssl.endpoint.identification.algorithm": "none",
        "socket.keepalive.enable": True, "request.timeout.ms": 7000,
    })
    options = aiokafka_options(kafka)
    assert options["bootstrap_servers"] == ["a:1", "b:2"]
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_password"] == "p"
    assert options["request_timeout_ms"] == 7000
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.check_hostname is False
    faust_options = faust_broker_options(kafka)
    assert faust_options["broker"] == "kafka://a:1;kafka://b:2"
    assert faust_options["broker_request_timeout"] == 7.0


def test_a_property_the_python_clients_cannot_honour_is_refused_only_when_they_are_used() -> None:
    settings = HeadwaterSettings.model_validate({"kafka": {"sasl_kerberos_service_name": "kafka"}})
    assert settings.kafka.properties()["sasl.kerberos.service.name"] == "kafka"
    clients.producer(settings.kafka).close()
    with pytest.raises(UnsupportedProperty) as refused:
        faust_broker_options(settings.kafka)
    assert "'sasl.kerberos.service.name'" in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("code", "permanent", "too_large"),
    [
        (KafkaError.MSG_SIZE_TOO_LARGE, True, True),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, True, False),
        (KafkaError._UNKNOWN_TOPIC, True, False),
        (KafkaError._MSG_TIMED_OUT, False, False),
        (KafkaError.NOT_ENOUGH_REPLICAS, False, False),
        (KafkaError._TRANSPORT, False, False),
    ],
)
def test_librdkafka_errors_are_classified(code: int, permanent: bool, too_large: bool) -> None:
    failure = from_kafka_error(KafkaError(code))
    assert (failure.permanent, failure.too_large) == (permanent, too_large)


def test_aiokafka_errors_are_classified_through_their_cause() -> None:
    wrapped = RuntimeError("send failed")
    wrapped.__cause__ = aiokafka_errors.MessageSizeTooLargeError()
    assert from_exception(wrapped).too_large and from_exception(wrapped).permanent
    assert not from_exception(aiokafka_errors.KafkaTimeoutError()).permanent
    assert from_exception(aiokafka_errors.TopicAuthorizationFailedError()).permanent
