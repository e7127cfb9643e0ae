"""Who may call Headwater's HTTP servers (ingest and the registry): API keys stored hashed, OIDC bearer tokens checked
against the identity provider's JWKS, a scope per topic, a per-principal rate limit, and HTTPS."""

from headwater.auth.config import ApiKeyEntry, AuthSettings, OidcSettings, RateLimitSettings, TlsSettings
from headwater.auth.middleware import auth_middleware, json_refusal
from headwater.auth.principal import Principal

__all__ = [
    "ApiKeyEntry", "AuthSettings", "OidcSettings", "Principal", "RateLimitSettings", "TlsSettings", "auth_middleware",
    "json_refusal",
]
