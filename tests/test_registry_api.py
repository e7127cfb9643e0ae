"""confluent-kafka's SchemaRegistryClient drives every endpoint of `headwater registry serve` on the real broker."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference
from confluent_kafka.schema_registry.error import SchemaRegistryError

from tests.fixtures.registry import RegistryService


def record(name: str, *fields: tuple[str, Any], **extra: Any) -> str:
    body = {"type": "record", "name": name, "fields": [{"name": n, "type": t} for n, t in fields], **extra}
    return json.dumps(body)


V1 = record("Customer", ("id", "string"))
V2 = json.dumps(
    {
        "type": "record",
        "name": "Customer",
        "fields": [{"name": "id", "type": "string"}, {"name": "email", "type": ["null", "string"], "default": None}],
    }
)


def subject() -> str:
    return f"test.{uuid.uuid4().hex[:10]}-value"


def error_of(call: Any, *args: Any, **kwargs: Any) -> SchemaRegistryError:
    with pytest.raises(SchemaRegistryError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_register_get_and_lookup(registry: RegistryService) -> None:
    client = registry.client()
    name = subject()
    first = client.register_schema(name, Schema(V1, "AVRO"))
    second = client.register_schema(name, Schema(V2, "AVRO"))
    assert second > first

    assert name in client.get_subjects()
    assert client.get_versions(name) == [1, 2]
    latest = client.get_latest_version(name)
    assert (latest.version, latest.schema_id, json.loads(latest.schema.schema_str)) == (2, second, json.loads(V2))
    v1 = client.get_version(name, 1)
    assert (v1.schema_id, v1.subject) == (first, name)
    assert json.loads(client.get_schema(first).schema_str) == json.loads(V1)

    found = registry.client().lookup_schema(name, Schema(V1, "AVRO"))
    assert (found.version, found.schema_id) == (1, first)

    assert client.get_subjects_by_schema_id(first) == [name]
    assert [(v.subject, v.version) for v in client.get_schema_versions(second)] == [(name, 2)]
    assert client.get_schema_types() == ["AVRO"]


def test_same_schema_is_deduplicated_across_whitespace_and_subjects(registry: RegistryService) -> None:
    client = registry.client()
    a, b = subject(), subject()
    first = client.register_schema(a, Schema(V1, "AVRO"))
    offset = registry.end_offset()
    spaced = json.dumps(json.loads(V1), indent=4)
    assert registry.client().register_schema(a, Schema(spaced, "AVRO")) == first
    assert registry.end_offset() == offset, "re-registering a present schema must not write"
    assert registry.client().register_schema(b, Schema(spaced, "AVRO")) == first
    assert {a, b} <= set(client.get_subjects_by_schema_id(first))


def test_raw_schema_endpoints(registry: RegistryService) -> None:
    client = registry.client()
    name = subject()
    schema_id = client.register_schema(name, Schema(V1, "AVRO"))
    for path in (
        f"/subjects/{name}/versions/1/schema",
        f"/subjects/{name}/versions/latest/schema",
        f"/schemas/ids/{schema_id}/schema",
    ):
        response = httpx.get(registry.url + path)
        assert response.status_code == 200
        assert response.json() == json.loads(V1)
    response = httpx.get(f"{registry.url}/schemas/ids/{schema_id}")
    assert response.headers["content-type"].startswith("application/vnd.schemaregistry.v1+json")


def test_soft_then_permanent_delete_of_versions_and_subjects(registry: RegistryService) -> None:
    client = registry.client()
    name = subject()
    own = f"Only{uuid.uuid4().hex[:8]}"
    client.register_schema(name, Schema(V1.replace("Customer", own), "AVRO"))
    v2_id = client.register_schema(name, Schema(V2.replace("Customer", own), "AVRO"))

    assert error_of(client.delete_version, name, 1, permanent=True).error_code == 40407
    assert client.delete_version(name, 1) == 1
    assert client.get_versions(name) == [2]
    assert error_of(client.get_version, name, 1).error_code == 40402
    assert httpx.get(f"{registry.url}/subjects/{name}/versions/1?deleted=true").json()["version"] == 1
    assert error_of(client.delete_version, name, 1).error_code == 40406
    assert client.delete_version(name, 1, permanent=True) == 1
    assert httpx.get(f"{registry.url}/subjects/{name}/versions?deleted=true").json() == [2]

    assert error_of(client.delete_subject, name, permanent=True).error_code == 40405
    assert client.delete_subject(name) == [2]
    assert name not in client.get_subjects()
    assert name in client.get_subjects(deleted=True)
    assert error_of(client.get_versions, name).error_code == 40401
    assert error_of(client.delete_subject, name).error_code == 40404
    assert client.get_schema(v2_id) is not None, "a soft-deleted schema is still readable by id"
    assert client.delete_subject(name, permanent=True) == [2]
    assert name not in client.get_subjects(deleted=True)
    assert error_of(registry.client().get_schema, v2_id).error_code == 40403

    again = client.register_schema(name, Schema(record(own + "Again", ("id", "long")), "AVRO"))
    assert client.get_versions(name) == [1]
    assert again > v2_id, "ids are never reused"


def test_compatibility_endpoint_with_verbose_reasons(registry: RegistryService) -> None:
    client = registry.client()
    name = subject()
    client.register_schema(name, Schema(V1, "AVRO"))
    breaking = record("Customer", ("id", "string"), ("tier", "int"))
    assert client.test_compatibility(name, Schema(V2, "AVRO")) is True
    assert client.test_compatibility(name, Schema(breaking, "AVRO"), version=1) is False
    assert client.test_compatibility_all_versions(name, Schema(breaking, "AVRO")) is False
    verbose = httpx.post(
        f"{registry.url}/compatibility/subjects/{name}/versions/latest?verbose=true",
        json={"schema": breaking},
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
    ).json()
    assert verbose["is_compatible"] is False
    assert any("tier" in message and "READER_FIELD_MISSING_DEFAULT_VALUE" in message for message in verbose["messages"])
    assert client.test_compatibility(subject(), Schema(V1, "AVRO")) is True, "no versions yet: anything goes"


def test_incompatible_registration_is_409_with_reason(registry: RegistryService) -> None:
    client = registry.client()
    name = subject()
    client.register_schema(name, Schema(V1, "AVRO"))
    offset = registry.end_offset()
    error = error_of(client.register_schema, name, Schema(record("Customer", ("id", "int")), "AVRO"))
    assert (error.http_status_code, error.error_code) == (409, 409)
    assert "incompatible" in error.error_message and "TYPE_MISMATCH" in error.error_message
    assert registry.end_offset() == offset


def test_subject_and_global_config(registry: RegistryService) -> None:
    client = registry.client()
    name = subject()
    assert client.get_compatibility() == "BACKWARD"
    assert error_of(client.get_compatibility, name).error_code == 40408
    assert httpx.get(f"{registry.url}/config/{name}?defaultToGlobal=true").json() == {"compatibilityLevel": "BACKWARD"}
    assert client.set_compatibility(name, "FULL_TRANSITIVE") == {"compatibility": "FULL_TRANSITIVE"}
    assert client.get_compatibility(name) == "FULL_TRANSITIVE"
    assert client.delete_config(name).compatibility_level == "FULL_TRANSITIVE"
    assert error_of(client.get_compatibility, name).error_code == 40408
    try:
        client.set_compatibility(level="NONE")
        assert client.get_compatibility() == "NONE"
        assert client.get_config().compatibility_level == "NONE"
    finally:
        client.delete_config()
    assert client.get_compatibility() == "BACKWARD"


def test_modes_readonly_blocks_writes_and_import_takes_given_ids(registry: RegistryService) -> None:
    client = registry.client()
    name = subject()
    client.register_schema(name, Schema(V1, "AVRO"))
    assert client.get_global_mode() == "READWRITE"
    assert error_of(client.get_mode, name).error_code == 40409
    assert client.update_mode(name, "READONLY") == "READONLY"
    assert client.get_mode(name) == "READONLY"
    offset = registry.end_offset()
    error = error_of(registry.client().register_schema, name, Schema(V2, "AVRO"))
    assert (error.http_status_code, error.error_code) == (422, 42205)
    assert error_of(client.delete_subject, name).error_code == 42205
    assert registry.end_offset() == offset
    assert client.delete_mode(name) == "READONLY"
    assert client.register_schema(name, Schema(V2, "AVRO")) > 0

    imported = subject()
    assert error_of(client.update_mode, name, "IMPORT").error_code == 42205, "IMPORT needs an empty subject"
    assert client.update_mode(imported, "IMPORT") == "IMPORT"
    body = {"schema": record("Imported", ("x", "long")), "id": 900_000 + uuid.uuid4().int % 1000, "version": 7}
    answer = httpx.post(f"{registry.url}/subjects/{imported}/versions", json=body)
    assert answer.json() == {"id": body["id"]}
    assert client.get_version(imported, 7).schema_id == body["id"]
    assert client.delete_mode(imported) == "IMPORT"
    refused = httpx.post(f"{registry.url}/subjects/{imported}/versions", json={**body, "version": 8})
    assert refused.json()["error_code"] == 42205, "ids can only be chosen in IMPORT mode"
    assert error_of(client.update_mode, name, "SIDEWAYS").error_code == 42204


def test_avro_references_to_other_subjects(registry: RegistryService) -> None:
    client = registry.client()
    address_subject, customer_subject = subject(), subject()
    address = json.dumps(
        {"type": "record", "name": "Address", "namespace": "io.test", "fields": [{"name": "city", "type": "string"}]}
    )
    client.register_schema(address_subject, Schema(address, "AVRO"))
    customer = json.dumps(
        {
            "type": "record",
            "name": "Customer",
            "namespace": "io.test",
            "fields": [{"name": "id", "type": "string"}, {"name": "home", "type": "io.test.Address"}],
        }
    )
    refs = [SchemaReference("io.test.Address", address_subject, 1)]
    customer_id = client.register_schema(customer_subject, Schema(customer, "AVRO", refs))
    fetched = client.get_latest_version(customer_subject).schema
    assert [(r.name, r.subject, r.version) for r in fetched.references] == [("io.test.Address", address_subject, 1)]
    assert httpx.get(f"{registry.url}/subjects/{address_subject}/versions/1/referencedby").json() == [customer_id]
    assert error_of(client.delete_subject, address_subject).error_code == 42206

    missing = error_of(client.register_schema, subject(), Schema(customer, "AVRO", []))
    assert missing.error_code == 42201 and "Address" in missing.error_message


def test_get_subjects_filters(registry: RegistryService) -> None:
    client = registry.client()
    prefix = f"filter.{uuid.uuid4().hex[:6]}"
    for suffix in ("a", "b"):
        client.register_schema(f"{prefix}.{suffix}", Schema(V1, "AVRO"))
    client.delete_subject(f"{prefix}.b")
    assert client.get_subjects(subject_prefix=prefix) == [f"{prefix}.a"]
    assert client.get_subjects(subject_prefix=prefix, deleted=True) == [f"{prefix}.a", f"{prefix}.b"]
    assert client.get_subjects(subject_prefix=prefix, deleted_only=True) == [f"{prefix}.b"]
    assert client.get_subjects(subject_prefix=prefix, deleted=True, offset=1, limit=1) == [f"{prefix}.b"]
