"""Connection settings shared by every part: Kafka (librdkafka names) and the schema registry.

Precedence, per ARCHITECTURE.md: command-line flag (passed as keyword overrides) > environment variable
`HEADWATER_<SECTION>__<KEY>` > YAML file > default. Kafka keys are accepted with librdkafka's dotted names
(`bootstrap.servers`) or their underscore form (`bootstrap_servers`, the only form an env var can carry).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from headwater.kafka.config import KafkaSettings

__all__ = ["HeadwaterSettings", "KafkaSettings", "RegistrySettings", "load_settings", "settings_from_data"]

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
    """`bootstrap.servers` -> `bootstrap_servers` at every level, so YAML and env keys merge as one
    (`KafkaSettings.properties` turns them back into librdkafka's names)."""
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
