"""An OIDC identity provider for tests: EC keys from `cryptography`, its JWKS served by pytest-httpserver, tokens
minted with PyJWT; and helpers that build hashed API keys, trustme certificates and an authenticated ingest server."""

from __future__ import annotations

import json
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import trustme
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from headwater.auth.api_keys import hash_key
from tests.webhook_support import serving

AUDIENCE = "headwater-ingest"


class IdentityProvider:
    """Publishes the public halves of its current keys at /jwks.json; `rotate` retires them for a new one."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.issuer = server.url_for("/realms/headwater")
        self.jwks_url = server.url_for("/jwks.json")
        self.published: dict[str, ec.EllipticCurvePrivateKey] = {}
        self.fetches = 0
        self.kid = self.rotate()
        server.expect_request("/jwks.json").respond_with_handler(self._jwks)

    def _jwks(self, _request: Request) -> Response:
        self.fetches += 1
        keys = [
            {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig", "alg": "ES256"}
            for kid, key in self.published.items()
        ]
        return Response(json.dumps({"keys": keys}), content_type="application/json")

    def rotate(self) -> str:
        """A new signing key replaces the published ones; returns its kid."""
        kid = uuid.uuid4().hex[:12]
        self.published = {kid: ec.generate_private_key(ec.SECP256R1())}
        self.kid = kid
        return kid

    def oidc(self, **overrides: Any) -> dict[str, Any]:
        """The `oidc` config section trusting this provider (refetch on an unknown kid at once: tests rotate fast)."""
        return {
            "issuer": self.issuer, "audience": AUDIENCE, "jwks_url": self.jwks_url,
            "jwks_refresh_cooldown_seconds": 0, **overrides,
        }

    def token(
        self,
        scopes: str,
        subject: str = "ingest-client",
        audience: str = AUDIENCE,
        issuer: str | None = None,
        expires_in: float = 300,
        kid: str | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": issuer or self.issuer, "aud": audience, "sub": subject, "scope": scopes,
            "iat": now, "exp": now + int(expires_in),
        }
        signing_key = key or self.published[kid or self.kid]
        return jwt.encode(claims, signing_key, algorithm="ES256", headers={"kid": kid or self.kid})


@dataclass(frozen=True)
class Certificates:
    ca: Path
    certificate: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def certificates(directory: Path) -> Certificates:
    """A trustme CA and a server certificate for 127.0.0.1 and localhost, as PEM files."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    found = Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca.cert_pem.write_to_path(str(found.ca))
    server.private_key_pem.write_to_path(str(found.key))
    with found.certificate.open("wb") as chain:
        for blob in server.cert_chain_pems:
            chain.write(blob.bytes())
    return found


def api_key(principal: str, *scopes: str) -> tuple[str, dict[str, Any]]:
    """A new key and its `api_keys` entry (hashed, as `headwater auth hash-key` prints it)."""
    key = f"hw_{uuid.uuid4().hex}{uuid.uuid4().hex}"
    return key, {"principal": principal, "hash": hash_key(key), "scopes": list(scopes)}


@asynccontextmanager
async def ingest(
    bootstrap: str, registry_url: str, tls: Certificates | None = None, **config: Any
) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """The webhook source on a free port producing to the real broker; yields a session and its base URL."""
    if tls is not None:
        config["tls"] = {"certificate": str(tls.certificate), "key": str(tls.key)}
    client_tls = tls.client_context() if tls else None
    async with serving(bootstrap, registry_url, client_tls=client_tls, **config) as (session, base, _name):
        yield session, base
