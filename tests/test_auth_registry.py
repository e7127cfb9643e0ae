"""The registry behind auth and HTTPS, driven by confluent-kafka's SchemaRegistryClient: an OIDC bearer token
(`bearer.auth.*`, STATIC_TOKEN) and an API key as basic auth over TLS with a trustme CA; reads need registry:read,
writes registry:write; refusals in the registry's error shape; bad `--auth-file` refused before start."""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path

import httpx
import pytest
import yaml
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from pydantic import SecretStr
from pytest_httpserver import HTTPServer

from headwater.settings import RegistrySettings
from schemas.client import registry_client
from tests.auth_support import IdentityProvider, api_key, certificates
from tests.cli import headwater
from tests.fixtures.registry import RegistryService

SCHEMA = json.dumps({"type": "record", "name": "Thing", "fields": [{"name": "id", "type": "string"}]})


def wait_ready(url: str, ca: ssl.SSLContext, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/readyz", verify=ca, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"the registry on {url} was not ready within {timeout:.0f}s"
        time.sleep(0.1)


def test_registry_with_tokens_and_api_keys_over_https(
    registry: RegistryService, httpserver: HTTPServer, tmp_path: Path
) -> None:
    provider = IdentityProvider(httpserver)
    tls = certificates(tmp_path)
    key, entry = api_key("deployer", "registry:*")
    auth_file = tmp_path / "auth.yaml"
    auth_file.write_text(yaml.safe_dump({
        "auth": {"api_keys": [entry], "oidc": provider.oidc(audience="headwater-registry")},
        "tls": {"certificate": str(tls.certificate), "key": str(tls.key)},
    }))
    secured = registry.spawn(None, "--auth-file", str(auth_file), wait=False)
    url = secured.url.replace("http://", "https://")
    try:
        wait_ready(url, tls.client_context())

        def client(**config: str) -> SchemaRegistryClient:
            return SchemaRegistryClient({"url": url, "ssl.ca.location": str(tls.ca), **config})

        def bearer(scopes: str) -> dict[str, str]:
            token = provider.token(scopes, subject="ci", audience="headwater-registry")
            return {
                "bearer.auth.credentials.source": "STATIC_TOKEN",
                "bearer.auth.token": token,
                "bearer.auth.logical.cluster": "headwater",
            }

        writer = bearer("registry:read registry:write")
        assert client(**writer).register_schema("things-value", Schema(SCHEMA, "AVRO")) > 0
        reader = bearer("registry:read")
        assert client(**reader).get_subjects() == ["things-value"]
        with pytest.raises(SchemaRegistryError) as forbidden:
            client(**reader).register_schema("other-value", Schema(SCHEMA, "AVRO"))
        assert (forbidden.value.http_status_code, forbidden.value.error_code) == (403, 40301)
        assert forbidden.value.error_message == "ci is not granted scope registry:write"

        by_key = client(**{"basic.auth.user.info": f"deployer:{key}"})
        assert by_key.get_latest_version("things-value").version == 1
        settings = RegistrySettings(
            url=url, basic_auth_user="deployer", basic_auth_password=SecretStr(key), ssl_ca_location=tls.ca
        )
        assert registry_client(settings).get_subjects() == ["things-value"], "Headwater's own clients get in"
        with pytest.raises(SchemaRegistryError) as refused:
            client(**{"basic.auth.user.info": "deployer:not-the-key"}).get_subjects()
        assert (refused.value.http_status_code, refused.value.error_code) == (401, 40101)

        anonymous = httpx.get(f"{url}/subjects", verify=tls.client_context())
        assert anonymous.status_code == 401
        missing = "credentials required: a bearer token or an API key"
        assert anonymous.json() == {"error_code": 40101, "message": missing}
        assert anonymous.headers.get_list("WWW-Authenticate") == ['Bearer realm="headwater"', 'Basic realm="headwater"']
        assert httpx.get(f"{url}/healthz", verify=tls.client_context()).status_code == 200, "health checks stay open"
    finally:
        assert secured.terminate() == 0
    logs = secured.logs()
    assert "event=auth_forbidden principal=ci scope=registry:write" in logs
    assert key not in logs and writer["bearer.auth.token"] not in logs and reader["bearer.auth.token"] not in logs


def test_bad_auth_file_is_refused_before_start(tmp_path: Path) -> None:
    # the same models as the webhook's auth/tls sections, whose other refusals test_auth_ingest checks
    auth_file = tmp_path / "auth.yaml"
    auth_file.write_text(yaml.safe_dump({"auth": {"oidc": {"issuer": "https://idp", "audience": "registry"}}}))
    refused = headwater("registry", "serve", "--bootstrap-servers", "127.0.0.1:1", "--auth-file", str(auth_file))
    assert refused.returncode == 2, refused.stderr
    assert f"error: {auth_file}: auth.oidc.jwks_url: Field required" in " ".join(refused.stderr.split())
