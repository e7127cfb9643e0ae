"""Authenticated HTTP ingest against the real broker and registry: OIDC tokens minted by a local identity provider
(its JWKS served by pytest-httpserver) checked for issuer, audience, expiry, signature and the topic's scope, key
rotation picked up on an unknown kid, hashed API keys, the per-principal rate limit, HTTPS with a trustme CA, bad
config refused naming the field, and no key or token in any log line."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from confluent_kafka.schema_registry import Schema
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError
from pytest_httpserver import HTTPServer
from typer.testing import CliRunner

from connectors.sources.webhook import WebhookConfig
from headwater.auth.api_keys import hash_key, verify_key
from headwater.ports import free_port
from headwater.settings import first_error
from streams.cli import app
from tests.auth_support import AUDIENCE, IdentityProvider, api_key, certificates, ingest
from tests.connect_support import end_offset

VIEW_SCHEMA = {
    "type": "record",
    "name": "PageView",
    "namespace": "io.headwater.test",
    "fields": [{"name": "view_id", "type": "string"}, {"name": "seconds", "type": "int"}],
}


def schema_topic(kafka: Any, registry: Any) -> str:
    topic: str = kafka.create_topic()
    registry.client().register_schema(f"{topic}-value", Schema(json.dumps(VIEW_SCHEMA), "AVRO"))
    return topic


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def post(session: aiohttp.ClientSession, url: str, headers: dict[str, str], view: str) -> tuple[int, Any]:
    async with session.post(url, json={"view_id": view, "seconds": 3}, headers=headers) as answer:
        return answer.status, (await answer.json(), answer.headers)


async def test_oidc_tokens(kafka: Any, registry: Any, httpserver: HTTPServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    topic = schema_topic(kafka, registry)
    provider = IdentityProvider(httpserver)
    scope = f"ingest:{topic}"
    async with ingest(kafka.bootstrap, registry.url, auth={"oidc": provider.oidc()}) as (session, base):
        url = f"{base}/topics/{topic}"
        good = provider.token(f"registry:read {scope}")
        status, (body, _headers) = await post(session, url, bearer(good), "v-1")
        assert (status, body) == (200, {"accepted": 1})

        status, (body, headers) = await post(session, url, {}, "v-x")
        assert status == 401 and body["error"] == "credentials required: a bearer token or an API key"
        assert headers["WWW-Authenticate"] == 'Bearer realm="headwater"'
        refused = {
            "token expired": provider.token(scope, expires_in=-120),
            "token audience is not headwater-ingest": provider.token(scope, audience="another-service"),
            f"token issuer is not {provider.issuer}": provider.token(scope, issuer="https://evil.example.com"),
            "bearer token is not a JWT": "not-a-jwt",
        }
        tokens = [good, *refused.values()]
        for reason, token in refused.items():
            status, (body, headers) = await post(session, url, bearer(token), "v-x")
            assert (status, body["error"]) == (401, reason)
            assert headers["WWW-Authenticate"] == 'Bearer realm="headwater", error="invalid_token"'

        other_topic = provider.token("ingest:someone.else")
        status, (body, _headers) = await post(session, url, bearer(other_topic), "v-x")
        assert (status, body["error"]) == (403, f"ingest-client is not granted scope {scope}")

        fetched = provider.fetches
        retired = provider.kid
        retired_key = provider.published[retired]
        provider.rotate()
        rotated = provider.token(scope)
        status, _answer = await post(session, url, bearer(rotated), "v-2")
        assert status == 200, "a token signed with the new key is accepted once the JWKS is refetched"
        assert provider.fetches == fetched + 1, "an unknown kid refetches the JWKS once; known kids use the cache"
        status, _answer = await post(session, url, bearer(rotated), "v-3")
        assert status == 200 and provider.fetches == fetched + 1

        unknown = provider.token(scope, kid="never-published", key=ec.generate_private_key(ec.SECP256R1()))
        status, (body, _headers) = await post(session, url, bearer(unknown), "v-x")
        assert (status, body["error"]) == (401, "token signed by a key the provider does not publish")
        old = provider.token(scope, kid=retired, key=retired_key)
        status, (body, _headers) = await post(session, url, bearer(old), "v-x")
        assert (status, body["error"]) == (401, "token signed by a key the provider does not publish"), "key retired"
        forged = provider.token(scope, key=ec.generate_private_key(ec.SECP256R1()))
        status, (body, _headers) = await post(session, url, bearer(forged), "v-x")
        assert (status, body["error"]) == (401, "token signature does not verify")
        tokens += [other_topic, rotated, unknown, old, forged]
    assert end_offset(kafka.bootstrap, topic) == 3, "only the accepted requests reached the topic"
    assert "event=auth_refused status=401 code=expired" in caplog.text
    leaked = [token for token in tokens if token in caplog.text or token.rsplit(".", 1)[-1] in caplog.text]
    assert not leaked, "a token reached the log"


async def test_api_keys_and_rate_limit(kafka: Any, registry: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    topic = schema_topic(kafka, registry)
    key, entry = api_key("crm-bot", "ingest:*")
    other_key, other_entry = api_key("reporting", "ingest:reports.*")
    auth = {"api_keys": [entry, other_entry], "rate_limit": {"requests": 3, "per_seconds": 60}}
    webhooks = {
        "hubspot_client_secret": "app-secret",
        "salesforce_objects": [{"name": "Contact", "topic": topic}],
        "unauthenticated_webhooks": ["salesforce"],
    }
    async with ingest(kafka.bootstrap, registry.url, auth=auth, **webhooks) as (session, base):
        async with session.post(f"{base}/hubspot/webhooks", json=[], headers={"X-API-Key": other_key}) as answer:
            expected = "reporting is not granted scope ingest:crm.hubspot_events.raw"
            assert (answer.status, (await answer.json())["error"]) == (403, expected), "webhooks need their scope"
        async with session.post(f"{base}/hubspot/webhooks", json=[]) as answer:
            assert answer.status == 401, "no credentials"
        async with session.post(f"{base}/salesforce/outbound", data=b"<soapenv:Envelope/>") as answer:
            assert answer.status == 400, "exempt: Salesforce cannot send credentials, its message is checked as before"

        url = f"{base}/topics/{topic}"
        status, (body, _headers) = await post(session, url, {"X-API-Key": key}, "v-1")
        assert (status, body) == (200, {"accepted": 1})
        basic = base64.b64encode(f"crm-bot:{key}".encode()).decode()
        status, _answer = await post(session, url, {"Authorization": f"Basic {basic}"}, "v-2")
        assert status == 200, "the same key as basic auth principal:key"

        status, (body, headers) = await post(session, url, {"X-API-Key": key[:-1] + "x"}, "v-x")
        assert (status, body["error"]) == (401, "API key not recognised")
        assert headers["WWW-Authenticate"] == 'Basic realm="headwater"'
        wrong_owner = base64.b64encode(f"reporting:{key}".encode()).decode()
        status, _answer = await post(session, url, {"Authorization": f"Basic {wrong_owner}"}, "v-x")
        assert status == 401, "a key is only good for its own principal"
        status, (body, _headers) = await post(session, url, {"X-API-Key": other_key}, "v-x")
        assert (status, body["error"]) == (403, f"reporting is not granted scope ingest:{topic}")

        status, _answer = await post(session, url, {"X-API-Key": key}, "v-3")
        assert status == 200
        status, (body, headers) = await post(session, url, {"X-API-Key": key}, "v-x")
        assert status == 429 and headers["Retry-After"] == "20"
        assert body["error"] == "rate limit of 3 requests per 60s exceeded for crm-bot"
        status, _answer = await post(session, url, {"X-API-Key": other_key}, "v-x")
        assert status == 403, "the limit is per principal: reporting still gets its own answer"
    assert end_offset(kafka.bootstrap, topic) == 3
    assert "event=auth_rate_limited principal=crm-bot" in caplog.text
    assert key not in caplog.text and other_key not in caplog.text, "a key reached the log"


async def test_https_with_a_configured_certificate(kafka: Any, registry: Any, tmp_path: Path) -> None:
    topic = schema_topic(kafka, registry)
    tls = certificates(tmp_path)
    key, entry = api_key("crm-bot", f"ingest:{topic}")
    async with ingest(kafka.bootstrap, registry.url, tls=tls, auth={"api_keys": [entry]}) as (session, base):
        assert base.startswith("https://")
        status, (body, _headers) = await post(session, f"{base}/topics/{topic}", {"X-API-Key": key}, "v-1")
        assert (status, body) == (200, {"accepted": 1})
        async with aiohttp.ClientSession() as untrusting:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await untrusting.get(f"{base}/healthz")
            with pytest.raises(aiohttp.ClientError):
                await untrusting.get(f"{base.replace('https', 'http')}/healthz")
    assert end_offset(kafka.bootstrap, topic) == 1


def refusal(config: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as refused:
        WebhookConfig.model_validate(config)
    return first_error(refused.value)


def test_bad_config_is_refused_naming_the_field(tmp_path: Path) -> None:
    _key, entry = api_key("crm-bot", "ingest:*")
    oidc = {"issuer": "https://idp.example.com", "audience": "headwater"}
    assert refusal({"auth": {"oidc": oidc}}) == "auth.oidc.jwks_url: Field required"
    assert refusal({"auth": {}}).startswith("auth: Value error, auth needs api_keys or oidc")
    assert refusal({"auth": {"api_keys": [{**entry, "hash": "s3cret"}]}}).startswith("auth.api_keys[0].hash: Value")
    assert refusal({"auth": {"api_keys": [{**entry, "scopes": []}]}}).startswith("auth.api_keys[0].scopes:")
    missing = tmp_path / "missing.pem"
    tls = certificates(tmp_path)
    assert refusal({"tls": {"certificate": str(missing), "key": str(tls.key)}}) == (
        f"tls.certificate: Value error, {missing} is not a readable file"
    )
    swapped = refusal({"tls": {"certificate": str(tls.key), "key": str(tls.certificate)}})
    assert swapped.startswith(f"tls: Value error, certificate {tls.key} and key {tls.certificate} do not load")


def test_hash_key_prints_the_stored_form() -> None:
    hashed = CliRunner().invoke(app, ["auth", "hash-key"], input="hw_the-key\n")
    assert hashed.exit_code == 0, hashed.output
    stored = hashed.stdout.strip()
    assert stored.startswith("scrypt$16384$8$1$") and "hw_the-key" not in stored
    assert verify_key("hw_the-key", stored) and not verify_key("hw_the-kez", stored)
    assert stored != hash_key("hw_the-key"), "salted: the same key hashes anew"


def test_hash_key_generates_a_key() -> None:
    generated = CliRunner().invoke(app, ["auth", "hash-key", "--generate"])
    assert generated.exit_code == 0, generated.output
    key = generated.stderr.rsplit(" ", 1)[-1].strip()
    assert key.startswith("hw_") and len(key) > 40
    assert verify_key(key, generated.stdout.strip()) and key not in generated.stdout


async def test_unreachable_identity_provider_answers_503(kafka: Any, registry: Any) -> None:
    closed = f"http://127.0.0.1:{free_port()}/jwks.json"
    oidc = {"issuer": "https://idp.example.com", "audience": AUDIENCE, "jwks_url": closed}
    async with ingest(kafka.bootstrap, registry.url, auth={"oidc": oidc}) as (session, base):
        placeholder_key = "never checked: the JWKS cannot be fetched"
        token = jwt.encode({"sub": "x"}, placeholder_key, algorithm="HS256", headers={"kid": "k1"})
        status, (body, headers) = await post(session, f"{base}/topics/any.topic", bearer(token), "v-x")
        assert status == 503 and headers["Retry-After"] == "5", "the sender retries; its token may well be good"
        assert body["error"] == "the identity provider's JWKS could not be fetched: PyJWKClientConnectionError"
