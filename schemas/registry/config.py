"""Settings of one `headwater registry serve` process."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from headwater.auth import AuthSettings, TlsSettings
from headwater.settings import KafkaSettings

DEFAULT_TOPIC = "_schemas"


class RegistryServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)  # type: ignore[arg-type]
    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8081, ge=1, le=65535, description="HTTP port.")
    topic: str = Field(DEFAULT_TOPIC, min_length=1, description="Single-partition compacted storage topic.")
    group: str | None = Field(
        None, description="Kafka consumer group used to elect the primary (default: headwater-registry-<topic>)."
    )
    advertised_url: str | None = Field(
        None, description="URL other registry processes use to forward writes here (default: http://host:port)."
    )
    users_file: Path | None = Field(
        None, description="File of `user:password` lines enabling HTTP basic auth (also HEADWATER_REGISTRY_USERS)."
    )
    auth: AuthSettings | None = Field(
        None, description="API keys and/or OIDC tokens required (scopes registry:read, registry:write)."
    )
    tls: TlsSettings | None = Field(None, description="Serve HTTPS with this certificate and key.")
    startup_timeout: float = Field(
        300.0, gt=0, description="Seconds to reach Kafka, load the storage topic and join the election at start-up."
    )
    max_schema_bytes: int = Field(
        default=512 * 1024, gt=0, description="Largest schema accepted; must fit a Kafka record with its JSON envelope."
    )

    @model_validator(mode="after")
    def _one_kind_of_auth(self) -> Self:
        if self.auth is not None and self.users_file is not None:
            raise ValueError("users_file and auth both configure credentials: keep one")
        return self

    @property
    def election_group(self) -> str:
        return self.group or f"headwater-registry-{self.topic}"

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        scheme = "https" if self.tls else "http"
        return self.advertised_url or f"{scheme}://{host}:{self.port}"
