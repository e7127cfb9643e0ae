"""How to reach the Kafka cluster: librdkafka's property names, every one of them.

The properties Headwater itself reads (servers, security, client id) are fields; any other librdkafka property
(`socket.keepalive.enable`, `ssl.endpoint.identification.algorithm`, ...) is kept as given and passed to
confluent-kafka unchanged. `headwater.kafka.python_clients` maps them for aiokafka and Faust.

Settings files and environment variables reach this model with underscores (`ssl_endpoint_identification_algorithm`,
the only form an env var can carry); `properties()` gives librdkafka's dotted names back. librdkafka's own names
never contain an underscore except the few in `_UNDERSCORED`.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
_UNDERSCORED = frozenset({"log_level", "enabled_events"})
_SECRET_PARTS = ("password", "secret", "pem", "sasl.oauthbearer.config")


def librdkafka_name(key: str) -> str:
    """`ssl_endpoint_identification_algorithm` -> `ssl.endpoint.identification.algorithm`."""
    return key if key in _UNDERSCORED else key.replace("_", ".")


def is_secret(name: str) -> bool:
    return any(part in name for part in _SECRET_PARTS)


def _text(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class KafkaSettings(BaseModel):
    """How to reach the Kafka cluster, with the librdkafka property names users already have.

    Any librdkafka property may be added beside these fields; it is passed to confluent-kafka unchanged.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    bootstrap_servers: str = Field("127.0.0.1:9092", alias="bootstrap.servers", min_length=1)
    security_protocol: SecurityProtocol = Field("PLAINTEXT", alias="security.protocol")
    sasl_mechanism: str | None = Field(
        None, alias="sasl.mechanism", description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (also `sasl.mechanisms`)."
    )
    sasl_username: str | None = Field(None, alias="sasl.username")
    sasl_password: SecretStr | None = Field(None, alias="sasl.password")
    ssl_ca_location: Path | None = Field(None, alias="ssl.ca.location")
    ssl_certificate_location: Path | None = Field(None, alias="ssl.certificate.location")
    ssl_key_location: Path | None = Field(None, alias="ssl.key.location")
    ssl_key_password: SecretStr | None = Field(None, alias="ssl.key.password")
    client_id: str = Field("headwater", alias="client.id")

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        """Dotted extras to the underscore form, secrets wrapped, and `sasl.mechanisms` (librdkafka's older name)
        read as `sasl.mechanism`, so every spelling of one property lands on one key."""
        if not isinstance(data, dict):
            return data
        known = {name for name, info in cls.model_fields.items()} | {
            info.alias for info in cls.model_fields.values() if info.alias
        }
        spelled: dict[str, Any] = {}
        for key, value in data.items():
            name = str(key)
            if name in ("sasl.mechanisms", "sasl_mechanisms"):
                name = "sasl_mechanism"
            if name not in known:
                name = name.replace(".", "_") if name not in _UNDERSCORED else name
                if is_secret(librdkafka_name(name)) and not isinstance(value, SecretStr):
                    value = SecretStr(_text(value))
            spelled[name] = value
        return spelled

    @field_validator("security_protocol", mode="before")
    @classmethod
    def _upper_protocol(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("sasl_mechanism", mode="before")
    @classmethod
    def _upper_mechanism(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    def extra_properties(self) -> dict[str, str]:
        """The librdkafka properties given beside the fields, by their dotted names, secrets revealed."""
        return {librdkafka_name(key): _text(value) for key, value in (self.model_extra or {}).items()}

    def properties(self) -> dict[str, str]:
        """Every librdkafka property of this connection, by its dotted name, secrets revealed."""
        config: dict[str, str] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "client.id": self.client_id,
        }
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": self.ssl_key_password,
        }
        config.update({key: _text(value) for key, value in optional.items() if value is not None})
        config.update(self.extra_properties())
        return config

    def redacted(self) -> dict[str, str]:
        """`properties()` fit for a log line: every secret replaced by `***`."""
        return {key: "***" if is_secret(key) else value for key, value in self.properties().items()}

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context librdkafka would build from these properties, for the Python clients."""
        if "SSL" not in self.security_protocol:
            return None
        extra = self.extra_properties()
        # `ssl.ca.pem` is librdkafka's inline form of `ssl.ca.location`; neither: the system's trusted CAs.
        context = ssl.create_default_context(
            cafile=str(self.ssl_ca_location) if self.ssl_ca_location else None, cadata=extra.get("ssl.ca.pem")
        )
        if extra.get("ssl.endpoint.identification.algorithm", "https").lower() == "none":
            context.check_hostname = False
        if extra.get("enable.ssl.certificate.verification", "true").lower() == "false":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.ssl_certificate_location:
            context.load_cert_chain(
                str(self.ssl_certificate_location),
                str(self.ssl_key_location) if self.ssl_key_location else None,
                self.ssl_key_password.get_secret_value() if self.ssl_key_password else None,
            )
        return context
