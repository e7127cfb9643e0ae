"""Turns a request's credentials into a Principal: `Authorization: Bearer <JWT>` (OIDC), `X-API-Key: <key>`, or
`Authorization: Basic principal:key` (what HTTP clients such as confluent-kafka's registry client send)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections.abc import Mapping

from headwater.auth.api_keys import verify_key
from headwater.auth.config import AuthSettings
from headwater.auth.jwt_tokens import TokenVerifier
from headwater.auth.principal import Principal, Unauthenticated

API_KEY_HEADER = "X-API-Key"


class Authenticator:
    """Blocking (scrypt, JWKS): call `authenticate` in a worker thread."""

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self._tokens = TokenVerifier(settings.oidc) if settings.oidc else None
        self._by_principal = {entry.principal: entry for entry in settings.api_keys}
        # Keys already verified, by SHA-256 of what was presented: a returning caller costs one fast hash, not scrypt.
        # Only keys that matched go in, so the cache holds at most one entry per configured key.
        self._verified: dict[bytes, Principal] = {}
        self._lock = threading.Lock()

    def challenges(self) -> list[str]:
        """`WWW-Authenticate` values naming the schemes this server accepts."""
        found = []
        if self._tokens is not None:
            found.append('Bearer realm="headwater"')
        if self._by_principal:
            found.append('Basic realm="headwater"')
        return found

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        authorization = headers.get("Authorization", "")
        scheme, _, credentials = authorization.partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer" and credentials:
            if self._tokens is None:
                raise Unauthenticated("bearer tokens are not accepted here (no oidc configured)", "no_oidc")
            return self._tokens.verify(credentials)
        if scheme.lower() == "basic" and credentials:
            principal, key = self._basic(credentials)
            return self._api_key(key, principal)
        key = headers.get(API_KEY_HEADER, "").strip()
        if key:
            return self._api_key(key, None)
        raise Unauthenticated("credentials required: a bearer token or an API key", "missing")

    @staticmethod
    def _basic(credentials: str) -> tuple[str, str]:
        try:
            principal, sep, key = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthenticated("basic credentials are not base64 principal:key", "malformed_basic") from None
        if not sep:
            raise Unauthenticated("basic credentials are not base64 principal:key", "malformed_basic")
        return principal, key

    def _api_key(self, key: str, principal: str | None) -> Principal:
        """The principal whose key `key` is; with basic auth only the named principal's key is tried."""
        if not self._by_principal:
            raise Unauthenticated("API keys are not accepted here (no api_keys configured)", "no_api_keys")
        if principal is None:
            candidates = list(self._by_principal.values())
        else:
            entry = self._by_principal.get(principal)
            candidates = [entry] if entry else []
        fingerprint = hashlib.sha256(f"{principal or ''}\0{key}".encode()).digest()
        with self._lock:
            known = self._verified.get(fingerprint)
        if known is not None:
            return known
        for entry in candidates:
            if verify_key(key, entry.hash):
                found = Principal(entry.principal, frozenset(entry.scopes), "api_key")
                with self._lock:
                    self._verified[fingerprint] = found
                return found
        raise Unauthenticated("API key not recognised", "bad_api_key")
