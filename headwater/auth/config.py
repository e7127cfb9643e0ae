"""The auth and TLS sections of a server's config (the webhook connector's `auth`/`tls`, the registry's auth file).

Everything is checked when the model is validated, before anything listens: a stored key hash that does not parse,
OIDC without `jwks_url`, a certificate or key that cannot be read are refused naming the field."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from headwater.auth.api_keys import parse_stored
from headwater.settings import SettingsError, first_error, read_yaml_sections


class ApiKeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    principal: str = Field(min_length=1, pattern=r"^[^:\s]+$", description="Who the key belongs to (no `:`).")
    hash: str = Field(description="The key's stored form, printed by `headwater auth hash-key`; never the key.")
    scopes: list[str] = Field(
        min_length=1, description="What the key may do: `ingest:<topic>`, `registry:read`, `registry:write`; `*` ends."
    )

    @field_validator("hash")
    @classmethod
    def _parses(cls, value: str) -> str:
        parse_stored(value)
        return value


class OidcSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(min_length=1, description="The identity provider's issuer (`iss` of its tokens).")
    audience: str = Field(min_length=1, description="This service's audience (`aud` a token must name).")
    jwks_url: str = Field(pattern=r"^https?://", description="The provider's JWKS URL (its `jwks_uri`).")
    jwks_ca_file: Path | None = Field(None, description="CA bundle trusted for an HTTPS JWKS URL (default: system).")
    jwks_cache_seconds: float = Field(300.0, gt=0, description="How long fetched keys are used before a refetch.")
    jwks_refresh_cooldown_seconds: float = Field(
        30.0, ge=0, description="Least time between refetches for an unknown `kid` (forged kids cannot flood it)."
    )
    algorithms: list[str] = Field(["RS256", "ES256"], min_length=1, description="Signature algorithms accepted.")
    scope_claim: str = Field("scope", description="Claim holding the scopes (space-separated string or list).")
    leeway_seconds: float = Field(30.0, ge=0, description="Clock skew allowed on exp/nbf/iat.")

    @field_validator("jwks_ca_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a readable file")
        return value


class RateLimitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: int = Field(gt=0, description="Requests one principal may make per `per_seconds`.")
    per_seconds: float = Field(1.0, gt=0, description="The window of `requests`.")


class AuthSettings(BaseModel):
    """Credentials a server accepts; with this section present every request but the health checks needs one."""

    model_config = ConfigDict(extra="forbid")

    api_keys: list[ApiKeyEntry] = Field(default_factory=list, description="Accepted API keys (stored hashed).")
    oidc: OidcSettings | None = Field(None, description="Accept OIDC bearer JWTs from this identity provider.")
    rate_limit: RateLimitSettings | None = Field(None, description="Per-principal request rate; over it: 429.")

    @model_validator(mode="after")
    def _accepts_something(self) -> Self:
        if not self.api_keys and self.oidc is None:
            raise ValueError("auth needs api_keys or oidc (or remove the auth section)")
        return self


class TlsSettings(BaseModel):
    """Serve HTTPS with this certificate chain and private key (PEM)."""

    model_config = ConfigDict(extra="forbid")

    certificate: Path = Field(description="PEM certificate chain, the server's certificate first.")
    key: Path = Field(description="PEM private key of the certificate.")
    key_password: SecretStr | None = Field(None, description="Password of an encrypted key.")

    @field_validator("certificate", "key")
    @classmethod
    def _readable(cls, value: Path) -> Path:
        if not value.is_file():
            raise ValueError(f"{value} is not a readable file")
        return value

    @model_validator(mode="after")
    def _loads(self) -> Self:
        self.server_context()
        return self

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        password = self.key_password.get_secret_value() if self.key_password else None
        try:
            context.load_cert_chain(str(self.certificate), str(self.key), password)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"certificate {self.certificate} and key {self.key} do not load: {exc}") from None
        return context


class ServerSecurity(BaseModel):
    """A server's `auth` and `tls` sections as one file holds them (the registry's `--auth-file`)."""

    model_config = ConfigDict(extra="forbid")

    auth: AuthSettings | None = None
    tls: TlsSettings | None = None


def load_server_security(path: Path) -> ServerSecurity:
    """A server's `auth`/`tls` sections from a YAML file; SettingsError naming the file and the first bad field."""
    data = read_yaml_sections(path, "auth", "auth and tls")
    try:
        return ServerSecurity.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(f"{path}: {first_error(exc)}") from None
