"""Every bad request gets Confluent's error code and a readable message, never a 500, and writes nothing."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
from confluent_kafka.schema_registry import Schema

from tests.fixtures.registry import RegistryService

SR_JSON = "application/vnd.schemaregistry.v1+json"
GOOD = json.dumps({"type": "record", "name": "Good", "fields": [{"name": "a", "type": "string"}]})
KNOWN = f"bad-input.{uuid.uuid4().hex[:8]}-value"


@pytest.fixture(scope="module")
def known_subject(registry: RegistryService) -> str:
    registry.client().register_schema(KNOWN, Schema(GOOD, "AVRO"))
    return KNOWN


def schema_body(schema: object, **extra: object) -> bytes:
    return json.dumps({"schema": schema, **extra}).encode()


HUGE = json.dumps(
    {
        "type": "record",
        "name": "Huge",
        "fields": [{"name": f"f{i}", "type": "string", "doc": "x" * 200} for i in range(50_000)],
    }
)

CASES = [
    # (id, method, path, body, content type, http status, error code)
    ("malformed-json", "POST", "/subjects/{s}/versions", b'{"schema": ', SR_JSON, 400, 400),
    ("body-not-object", "POST", "/subjects/{s}/versions", b"[1, 2]", SR_JSON, 400, 400),
    ("schema-not-string", "POST", "/subjects/{s}/versions", b'{"schema": {"type": "int"}}', SR_JSON, 400, 400),
    ("missing-schema", "POST", "/subjects/{s}/versions", b"{}", SR_JSON, 422, 42201),
    ("schema-not-json", "POST", "/subjects/{s}/versions", schema_body("not json"), SR_JSON, 422, 42201),
    ("record-without-name", "POST", "/subjects/{s}/versions", schema_body('{"type":"record"}'), SR_JSON, 422, 42201),
    ("unknown-type", "POST", "/subjects/{s}/versions", schema_body('{"type":"nope"}'), SR_JSON, 422, 42201),
    (
        "json-schema",
        "POST",
        "/subjects/{s}/versions",
        schema_body('{"type":"object"}', schemaType="JSON"),
        SR_JSON,
        422,
        42201,
    ),
    (
        "protobuf",
        "POST",
        "/subjects/{s}/versions",
        schema_body('syntax = "proto3";', schemaType="PROTOBUF"),
        SR_JSON,
        422,
        42201,
    ),
    ("10mb-schema", "POST", "/subjects/{s}/versions", schema_body(HUGE), SR_JSON, 422, 42201),
    ("text-plain", "POST", "/subjects/{s}/versions", schema_body(GOOD), "text/plain", 415, 415),
    ("xml", "POST", "/subjects/{s}/versions", schema_body(GOOD), "application/xml", 415, 415),
    ("form", "POST", "/subjects/{s}", schema_body(GOOD), "application/x-www-form-urlencoded", 415, 415),
    ("unknown-subject-versions", "GET", "/subjects/{u}/versions", None, None, 404, 40401),
    ("unknown-subject-version", "GET", "/subjects/{u}/versions/1", None, None, 404, 40401),
    ("unknown-subject-lookup", "POST", "/subjects/{u}", schema_body(GOOD), SR_JSON, 404, 40401),
    ("unknown-subject-delete", "DELETE", "/subjects/{u}", None, None, 404, 40401),
    ("unknown-version", "GET", "/subjects/{s}/versions/99", None, None, 404, 40402),
    ("unknown-version-delete", "DELETE", "/subjects/{s}/versions/99", None, None, 404, 40402),
    ("schema-not-under-subject", "POST", "/subjects/{s}", schema_body('"string"'), SR_JSON, 404, 40403),
    ("unknown-id", "GET", "/schemas/ids/987654321", None, None, 404, 40403),
    ("negative-version", "GET", "/subjects/{s}/versions/-5", None, None, 422, 42202),
    ("zero-version", "GET", "/subjects/{s}/versions/0", None, None, 422, 42202),
    ("non-numeric-version", "GET", "/subjects/{s}/versions/abc", None, None, 422, 42202),
    ("fractional-version", "DELETE", "/subjects/{s}/versions/1.5", None, None, 422, 42202),
    ("too-large-version", "GET", "/subjects/{s}/versions/99999999999", None, None, 422, 42202),
    ("compat-bad-version", "POST", "/compatibility/subjects/{s}/versions/-2", schema_body(GOOD), SR_JSON, 422, 42202),
    ("bad-level", "PUT", "/config/{s}", b'{"compatibility": "SOMETIMES"}', SR_JSON, 422, 42203),
    ("bad-global-level", "PUT", "/config", b'{"compatibility": 5}', SR_JSON, 422, 42203),
    ("bad-mode", "PUT", "/mode/{s}", b'{"mode": "WRITEONLY"}', SR_JSON, 422, 42204),
    ("unknown-route", "GET", "/nothing/here", None, None, 404, 404),
    ("wrong-method", "PATCH", "/subjects", None, None, 405, 405),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "status", "code"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_request_answers_confluent_error_and_writes_nothing(
    registry: RegistryService,
    known_subject: str,
    method: str,
    path: str,
    body: bytes | None,
    content_type: str | None,
    status: int,
    code: int,
) -> None:
    before = registry.end_offset()
    url = registry.url + path.format(s=known_subject, u=f"unknown-{uuid.uuid4().hex[:8]}")
    headers = {"Content-Type": content_type} if content_type else {}
    response = httpx.request(method, url, content=body, headers=headers, timeout=60)
    answer = response.json()
    assert (response.status_code, answer["error_code"]) == (status, code), answer
    assert isinstance(answer["message"], str) and answer["message"] and "Traceback" not in answer["message"]
    assert registry.end_offset() == before


def test_unsupported_schema_types_say_so(registry: RegistryService) -> None:
    response = httpx.post(
        f"{registry.url}/subjects/x-value/versions",
        content=schema_body("{}", schemaType="PROTOBUF"),
        headers={"Content-Type": SR_JSON},
    )
    assert "not supported yet" in response.json()["message"]


@pytest.mark.parametrize("content_type", [SR_JSON, "application/vnd.schemaregistry+json", "application/json"])
def test_accepted_content_types(registry: RegistryService, content_type: str) -> None:
    response = httpx.post(
        f"{registry.url}/subjects/ct.{uuid.uuid4().hex[:8]}/versions",
        content=schema_body(GOOD),
        headers={"Content-Type": f"{content_type}; charset=utf-8"},
    )
    assert response.status_code == 200 and response.json()["id"] > 0


def test_basic_auth_when_users_are_configured(registry: RegistryService, tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("# registry users\nalice:s3cret\n")
    secured = registry.spawn(None, "--users-file", str(users))
    try:
        assert httpx.get(f"{secured.url}/healthz").status_code == 200
        denied = httpx.get(f"{secured.url}/subjects")
        assert (denied.status_code, denied.json()["error_code"]) == (401, 401)
        assert denied.headers["WWW-Authenticate"].startswith("Basic")
        assert httpx.get(f"{secured.url}/subjects", auth=("alice", "wrong")).status_code == 401
        client = secured.client(**{"basic.auth.user.info": "alice:s3cret"})
        assert client.register_schema("auth-value", Schema(GOOD, "AVRO")) == 1
        assert client.get_subjects() == ["auth-value"]
    finally:
        assert secured.terminate() == 0
