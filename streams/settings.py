"""Connection settings shared by every part: Kafka (librdkafka names) and the schema registry.

Precedence, per ARCHITECTURE.md: command-line flag (passed as keyword overrides) > environment variable
`HEADWATER_<SECTION>__<KEY>` > YAML file > default. Kafka keys are accepted with librdkafka's dotted names
(`bootstrap.servers`) or their underscore form (`bootstrap_servers`, the only form an env var can carry).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(BaseModel):
    """How to reach the Kafka cluster, with the librdkafka property names users already have."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    bootstrap_servers: str = Field("127.0.0.1:9092", alias="bootstrap.servers", min_length=1)
    security_protocol: SecurityProtocol = Field("PLAINTEXT", alias="security.protocol")
    sasl_mechanism: SaslMechanism | None = Field(None, alias="sasl.mechanism")
    sasl_username: str | None = Field(None, alias="sasl.username")
    sasl_password: SecretStr | None = Field(None, alias="sasl.password")
    ssl_ca_location: Path | None = Field(None, alias="ssl.ca.location")
    ssl_certificate_location: Path | None = Field(None, alias="ssl.certificate.location")
    ssl_key_location: Path | None = Field(None, alias="ssl.key.location")
    client_id: str = Field("headwater", alias="client.id")

    def confluent(self) -> dict[str, Any]:
        """Properties for confluent-kafka clients (librdkafka)."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "client.id": self.client_id,
        }
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password.get_secret_value() if self.sasl_password else None,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
        }
        config.update({key: str(value) for key, value in optional.items() if value is not None})
        return config

    def confluent_producer(self) -> dict[str, Any]:
        """Properties for confluent-kafka producers: `confluent()` plus the Java client's key hashing.

        librdkafka's default partitioner (CRC32) places a key elsewhere than the Java client and aiokafka/Faust
        (murmur2) do; murmur2_random keeps one entity's records in one partition whichever client wrote them.
        """
        return {**self.confluent(), "partitioner": "murmur2_random"}

    def ssl_context(self) -> ssl.SSLContext | None:
        if "SSL" not in self.security_protocol:
            return None
        context = ssl.create_default_context(cafile=str(self.ssl_ca_location) if self.ssl_ca_location else None)
        if self.ssl_certificate_location:
            context.load_cert_chain(
                str(self.ssl_certificate_location),
                str(self.ssl_key_location) if self.ssl_key_location else None,
            )
        return context

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka producers and consumers."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
            "client_id": self.client_id,
        }
        if self.sasl_mechanism:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        context = self.ssl_context()
        if context is not None:
            kwargs["ssl_context"] = context
        return kwargs

    def faust_broker(self) -> str:
        """Faust's broker URL form: kafka://host1:port;host2:port."""
        return ";".join(f"kafka://{server.strip()}" for server in self.bootstrap_servers.split(","))


class RegistrySettings(BaseModel):
    """Where the Confluent-compatible schema registry answers."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    url: str = Field("http://127.0.0.1:8081", description="Base URL of the schema registry.")
    basic_auth_user: str | None = Field(None, description="User for HTTP basic auth, if the registry wants it.")
    basic_auth_password: SecretStr | None = Field(None, description="Password for HTTP basic auth.")

    def confluent(self) -> dict[str, Any]:
        """Configuration for confluent-kafka's SchemaRegistryClient."""
        config: dict[str, Any] = {"url": self.url}
        if self.basic_auth_user and self.basic_auth_password:
            config["basic.auth.user.info"] = (
                f"{self.basic_auth_user}:{self.basic_auth_password.get_secret_value()}"
            )
        return config


def _underscore_keys(data: Any) -> Any:
    """`bootstrap.servers` -> `bootstrap_servers` at every level, so YAML and env keys merge as one."""
    if isinstance(data, dict):
        return {str(key).replace(".", "_"): _underscore_keys(value) for key, value in data.items()}
    return data


class HeadwaterSettings(BaseSettings):
    """Connection settings for a Headwater process."""

    model_config = SettingsConfigDict(env_prefix="HEADWATER_", env_nested_delimiter="__", extra="forbid")
    file_data: ClassVar[dict[str, Any] | None] = None

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)  # type: ignore[arg-type]
    registry: RegistrySettings = Field(default_factory=RegistrySettings)  # type: ignore[arg-type]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, file_secret_settings]
        if cls.file_data is not None:
            sources.append(InitSettingsSource(settings_cls, cls.file_data))
        return tuple(sources)


SettingsT = TypeVar("SettingsT", bound=HeadwaterSettings)


def settings_from_data(settings_cls: type[SettingsT], data: Mapping[str, Any], **init: Any) -> SettingsT:
    """`settings_cls` from (highest first) `init` values, environment, `data` (a settings file already read), defaults.

    Sections of `init` and of the environment are merged over `data` key by key, not replaced whole.
    """
    from_data = type(f"{settings_cls.__name__}FromData", (settings_cls,), {"file_data": _underscore_keys(dict(data))})
    settings: SettingsT = from_data(**init)
    return settings


def load_settings(yaml_file: Path | None = None, **overrides: Any) -> HeadwaterSettings:
    """Settings from (highest first) overrides, environment, the YAML file, defaults.

    Overrides are nested dicts by section, e.g. `kafka={"bootstrap.servers": "host:9092"}`; sections given
    here are merged over the lower sources key by key, not replaced whole.
    """
    if yaml_file is not None and not yaml_file.is_file():
        raise FileNotFoundError(f"settings file {yaml_file} does not exist")
    data = (yaml.safe_load(yaml_file.read_text(encoding="utf-8")) or {}) if yaml_file is not None else {}
    base = settings_from_data(HeadwaterSettings, data)
    if not overrides:
        return base
    merged = base.model_dump(by_alias=False)
    for section, values in overrides.items():
        merged.setdefault(section, {}).update(_underscore_keys(values))
    return HeadwaterSettings.model_validate(merged)
