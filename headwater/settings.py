"""Connection settings shared by every part: Kafka (librdkafka names) and the schema registry.

Precedence, per ARCHITECTURE.md: command-line flag (passed as keyword overrides) > environment variable
`HEADWATER_<SECTION>__<KEY>` > YAML file > default. Kafka keys are accepted with librdkafka's dotted names
(`bootstrap.servers`) or their underscore form (`bootstrap_servers`, the only form an env var can carry).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from headwater.kafka.config import KafkaSettings, librdkafka_name

__all__ = [
    "HeadwaterSettings", "KafkaSettings", "RegistrySettings", "SettingsError", "field_path", "first_error", "layered",
    "load_settings", "read_settings_file", "read_yaml_sections", "settings_from_data",
]


class SettingsError(ValueError):
    """Settings that cannot be used; the one-line message names where the bad value came from and its field."""


class RegistrySettings(BaseModel):
    """Where the Confluent-compatible schema registry answers."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    url: str = Field("http://127.0.0.1:8081", description="Base URL of the schema registry.")
    basic_auth_user: str | None = Field(None, description="User for HTTP basic auth, if the registry wants it.")
    basic_auth_password: SecretStr | None = Field(
        None, description="Password for HTTP basic auth (or the API key of basic_auth_user, see --auth-file)."
    )
    ssl_ca_location: Path | None = Field(None, description="CA bundle trusted for an https URL (default: system).")

    def confluent(self) -> dict[str, Any]:
        """Configuration for confluent-kafka's SchemaRegistryClient."""
        config: dict[str, Any] = {"url": self.url}
        if self.ssl_ca_location:
            config["ssl.ca.location"] = str(self.ssl_ca_location)
        if self.basic_auth_user and self.basic_auth_password:
            config["basic.auth.user.info"] = (
                f"{self.basic_auth_user}:{self.basic_auth_password.get_secret_value()}"
            )
        return config


class EnrichSettings(BaseModel):
    """Where a process keeps what enrichment providers answered."""

    model_config = ConfigDict(extra="forbid")

    cache_dir: Path = Field(
        Path("~/.cache/headwater/enrich"),
        description="Directory of the result caches (one SQLite file per pipeline, shared by a machine's workers).",
    )
    cache_max_entries: int = Field(1_000_000, ge=1, description="Answers kept per pipeline before the oldest go.")


class OpenLineageSettings(BaseModel):
    """Where OpenLineage run events of pipelines and connectors go (a file of JSON lines, or Marquez-style HTTP)."""

    model_config = ConfigDict(extra="forbid")

    transport: Literal["none", "file", "http"] = Field("none", description="none: no events; file; http.")
    url: str | None = Field(None, description="http: base URL of the receiver, e.g. http://marquez:5000.")
    endpoint: str = Field("api/v1/lineage", description="http: path of the lineage endpoint under `url`.")
    api_key: SecretStr | None = Field(None, description="http: bearer token, if the receiver wants one.")
    path: Path | None = Field(None, description="file: the file events are appended to, one JSON per line.")
    namespace: str = Field("headwater", description="Namespace of the jobs (pipelines and connectors).")
    running_interval_s: float = Field(
        60.0, ge=0, description="Seconds between RUNNING events of a long run; 0: only START and COMPLETE/FAIL."
    )
    timeout_s: float = Field(5.0, gt=0, description="Seconds one delivery may take before it is given up.")

    @model_validator(mode="after")
    def _target(self) -> OpenLineageSettings:
        if self.transport == "http" and not self.url:
            raise ValueError("transport http needs `url`")
        if self.transport == "file" and self.path is None:
            raise ValueError("transport file needs `path`")
        return self


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
    enrich: EnrichSettings = Field(default_factory=EnrichSettings)  # type: ignore[arg-type]
    openlineage: OpenLineageSettings = Field(default_factory=OpenLineageSettings)  # type: ignore[arg-type]

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


def layered(lower: Mapping[str, Any], higher: Mapping[str, Any]) -> dict[str, Any]:
    """Two settings files' data as one: each section of `higher` merged over `lower`'s key by key, whatever the
    spelling (`bootstrap.servers` or `bootstrap_servers`)."""
    merged: dict[str, Any] = _underscore_keys(dict(lower))
    for section, values in _underscore_keys(dict(higher)).items():
        below = merged.get(section)
        merged[section] = {**below, **values} if isinstance(below, dict) and isinstance(values, dict) else values
    return merged


def settings_from_data(settings_cls: type[SettingsT], data: Mapping[str, Any], **init: Any) -> SettingsT:
    """`settings_cls` from (highest first) `init` values, environment, `data` (a settings file already read), defaults.

    Sections of `init` and of the environment are merged over `data` key by key, not replaced whole.
    """
    from_data = type(f"{settings_cls.__name__}FromData", (settings_cls,), {"file_data": _underscore_keys(dict(data))})
    settings: SettingsT = from_data(**init)
    return settings


def field_path(loc: Sequence[int | str]) -> str:
    """A pydantic error location as the user wrote it: `kafka.security.protocol`, `connectors[0].name`."""
    text = ""
    for index, part in enumerate(loc):
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        name = librdkafka_name(part) if index == 1 and loc[0] == "kafka" else part
        text += f".{name}" if text else name
    return text


def first_error(exc: ValidationError, prefix: str = "") -> str:
    """The first problem of a validation error in one line, `[prefix.]field: message (and N more)`."""
    error = exc.errors()[0]
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{field_path([*([prefix] if prefix else []), *error['loc']])}: {error['msg']}{more}"


def read_settings_file(yaml_file: Path) -> dict[str, Any]:
    """The sections of a settings YAML file, not yet validated; SettingsError when it is missing or not a mapping."""
    return read_yaml_sections(yaml_file, "settings", "kafka and registry")


def read_yaml_sections(path: Path, kind: str, sections: str) -> dict[str, Any]:
    """A YAML file of configuration sections, not yet validated; SettingsError naming the file when it is missing,
    not YAML or not a mapping (`kind` and `sections` word the errors: `auth`, `auth and tls`)."""
    if not path.is_file():
        raise SettingsError(f"{path}: {kind} file does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping with {sections} sections")
    return data


def _from_environment(loc: Sequence[int | str]) -> str | None:
    """The HEADWATER_* variable that set the field at `loc`, if one did."""
    wanted = "HEADWATER_" + "__".join(str(part) for part in loc[:2]).upper()
    return next((name for name in os.environ if name.upper() == wanted), None)


def load_settings(yaml_file: Path | None = None, **overrides: Any) -> HeadwaterSettings:
    """Settings from (highest first) overrides, environment, the YAML file, defaults.

    Overrides are nested dicts by section, e.g. `kafka={"bootstrap.servers": "host:9092"}`; sections given
    here are merged over the lower sources key by key, not replaced whole. Raises SettingsError naming the source
    (file, environment variable or command line) and the field of the first bad value.
    """
    data = read_settings_file(yaml_file) if yaml_file is not None else {}
    try:
        base = settings_from_data(HeadwaterSettings, data)
    except ValidationError as exc:
        variable = _from_environment(exc.errors()[0]["loc"])
        source = f"environment {variable}" if variable else str(yaml_file or "settings")
        raise SettingsError(f"{source}: {first_error(exc)}") from None
    if not overrides:
        return base
    merged = base.model_dump(by_alias=False)
    for section, values in overrides.items():
        merged.setdefault(section, {}).update(_underscore_keys(values))
    try:
        return HeadwaterSettings.model_validate(merged)
    except ValidationError as exc:
        raise SettingsError(f"command line: {first_error(exc)}") from None
