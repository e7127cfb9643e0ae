"""The registry answers as Confluent Schema Registry v8.1.1 does in the fifteen cases of issue 12, driven through
confluent-kafka's SchemaRegistryClient where it has the call and raw HTTP elsewhere; `_schemas` records written
before schemas were stored canonically still load with their ids."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference
from confluent_kafka.schema_registry.error import SchemaRegistryError

from headwater.kafka import clients
from headwater.settings import KafkaSettings
from schemas.registry import records
from schemas.registry.store import ensure_topic
from tests.fixtures.registry import RegistryProcess, RegistryService

SR_JSON = "application/vnd.schemaregistry.v1+json"

# A record as a person writes it: pretty-printed, keys in any order, names qualified and namespaces repeated.
SUBMITTED = json.dumps(
    {
        "fields": [
            {"type": "string", "doc": "the key", "name": "id"},
            {
                "name": "address",
                "type": {
                    "namespace": "com.acme",
                    "name": "Address",
                    "type": "record",
                    "fields": [{"name": "city", "type": {"type": "string"}, "order": "ascending"}],
                },
            },
            {"default": None, "name": "previous", "type": ["null", "com.acme.Address"]},
            {"name": "at", "type": {"logicalType": "timestamp-millis", "type": "long"}},
        ],
        "doc": "A customer",
        "name": "com.acme.Customer",
        "type": "record",
    },
    indent=2,
)
# Avro Java's Schema.toString of SUBMITTED: what Confluent stores and answers.
CANONICAL = (
    '{"type":"record","name":"Customer","namespace":"com.acme","doc":"A customer","fields":['
    '{"name":"id","type":"string","doc":"the key"},'
    '{"name":"address","type":{"type":"record","name":"Address","fields":[{"name":"city","type":"string"}]}},'
    '{"name":"previous","type":["null","Address"],"default":null},'
    '{"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}}]}'
)


def subject() -> str:
    return f"parity.{uuid.uuid4().hex[:10]}-value"


def record(name: str, *fields: dict[str, Any]) -> Schema:
    return Schema(json.dumps({"type": "record", "name": name, "fields": list(fields)}), "AVRO")


def error_of(call: Any, *args: Any, **kwargs: Any) -> SchemaRegistryError:
    with pytest.raises(SchemaRegistryError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_1_schemas_are_stored_and_answered_in_avro_canonical_form(registry: RegistryService) -> None:
    name = subject()
    schema_id = registry.client().register_schema(name, Schema(SUBMITTED, "AVRO"))
    assert httpx.get(f"{registry.url}/schemas/ids/{schema_id}").json()["schema"] == CANONICAL
    assert httpx.get(f"{registry.url}/schemas/ids/{schema_id}/schema").text == CANONICAL
    assert registry.client().get_version(name, 1).schema.schema_str == CANONICAL
    assert httpx.get(f"{registry.url}/subjects/{name}/versions/latest/schema").text == CANONICAL


def test_2_a_default_that_does_not_match_its_type_is_refused(registry: RegistryService) -> None:
    client, name = registry.client(), subject()
    bad = record("Bad", {"name": "s", "type": "string", "default": None})
    assert error_of(client.register_schema, name, bad).error_code == 42201
    client.register_schema(name, record("Bad", {"name": "n", "type": "int"}))
    assert error_of(client.test_compatibility, name, bad).error_code == 42201
    # Avro Java 1.12 accepts a union default matching any branch.
    assert client.register_schema(subject(), record("Ok", {"name": "s", "type": ["string", "null"], "default": None}))


def test_3_spellings_of_one_schema_share_one_id_and_version(registry: RegistryService) -> None:
    name = subject()
    first = registry.client().register_schema(name, Schema('"int"', "AVRO"))
    offset = registry.end_offset()
    assert registry.client().register_schema(name, Schema('{"type": "int"}', "AVRO")) == first
    assert registry.end_offset() == offset, "a second spelling must not write a new version"
    assert registry.client().get_versions(name) == [1]
    assert registry.client().register_schema(subject(), Schema(SUBMITTED, "AVRO")) == registry.client().register_schema(
        subject(), Schema(CANONICAL, "AVRO")
    )


def test_4_incompatible_409_names_the_old_version_and_schema(registry: RegistryService) -> None:
    client, name = registry.client(), subject()
    client.register_schema(name, record("C", {"name": "a", "type": "string"}))
    failure = error_of(client.register_schema, name, record("C", {"name": "a", "type": "int"}))
    assert failure.http_status_code == 409
    assert "{oldSchemaVersion: 1}" in failure.error_message
    assert """{oldSchema: '{"type":"record","name":"C","fields":[{"name":"a","type":"string"}]}'}""" in (
        failure.error_message
    )
    assert "compatibility: 'BACKWARD'}]" in failure.error_message


def test_5_compatibility_against_a_version_of_an_unknown_subject_is_40402(registry: RegistryService) -> None:
    failure = error_of(registry.client().test_compatibility, subject(), Schema('"int"', "AVRO"), 1)
    assert (failure.http_status_code, failure.error_code) == (404, 40402)


def test_6_verbose_compatibility_of_an_invalid_schema_is_an_incompatible_answer(registry: RegistryService) -> None:
    name = subject()
    registry.client().register_schema(name, Schema('"int"', "AVRO"))
    body = {"schema": json.dumps({"type": "record", "name": "X", "fields": [{"name": "f", "type": "nope"}]})}
    url = f"{registry.url}/compatibility/subjects/{name}/versions/latest"
    verbose = httpx.post(f"{url}?verbose=true", json=body)
    assert verbose.status_code == 200
    assert verbose.json()["is_compatible"] is False and "nope" in verbose.json()["messages"][0]
    plain = httpx.post(url, json=body)
    assert (plain.status_code, plain.json()["error_code"]) == (422, 42201)


def test_7_deleting_a_subject_config_that_is_not_set_is_40401(registry: RegistryService) -> None:
    failure = error_of(registry.client().delete_config, subject())
    assert (failure.http_status_code, failure.error_code) == (404, 40401)


def test_8_permanent_delete_of_a_subject_removes_its_config_and_mode(registry: RegistryService) -> None:
    client, name = registry.client(), subject()
    client.register_schema(name, Schema('"int"', "AVRO"))
    client.set_compatibility(name, "FULL")
    client.delete_subject(name)
    client.delete_subject(name, permanent=True)
    assert error_of(client.get_compatibility, name).error_code == 40408
    assert httpx.get(f"{registry.url}/config/{name}?defaultToGlobal=true").json()["compatibilityLevel"] != "FULL"


def test_9_a_read_only_subject_refuses_a_config_change(registry: RegistryService) -> None:
    client, name = registry.client(), subject()
    client.update_mode(name, "READONLY")
    failure = error_of(client.set_compatibility, name, "FULL")
    assert (failure.http_status_code, failure.error_code) == (422, 42205)
    assert error_of(client.get_compatibility, name).error_code == 40408, "nothing was written"


def test_10_deleting_a_subject_mode_that_is_not_set_is_40401(registry: RegistryService) -> None:
    failure = error_of(registry.client().delete_mode, subject())
    assert (failure.http_status_code, failure.error_code) == (404, 40401)


def test_11_import_mode_refuses_a_registration_without_an_id(registry: RegistryService) -> None:
    client, name = registry.client(), subject()
    client.update_mode(name, "IMPORT")
    failure = error_of(client.register_schema, name, Schema('"int"', "AVRO"))
    assert (failure.http_status_code, failure.error_code) == (422, 42205)
    chosen = random.randint(10**6, 2 * 10**6)
    answer = httpx.post(f"{registry.url}/subjects/{name}/versions", json={"schema": '"long"', "id": chosen})
    assert answer.json() == {"id": chosen}


def test_12_deleted_only_subjects_and_latest_of_a_deleted_subject(registry: RegistryService) -> None:
    client, name = registry.client(), subject()
    client.register_schema(name, Schema('"int"', "AVRO"))
    client.delete_subject(name)
    assert name in client.get_subjects(deleted_only=True)
    assert name in httpx.get(f"{registry.url}/subjects?deletedOnly=true").json()
    assert name not in client.get_subjects()
    live = subject()
    client.register_schema(live, Schema('"int"', "AVRO"))
    assert live not in client.get_subjects(deleted_only=True)
    failure = error_of(registry.client().get_latest_version, name)
    assert (failure.http_status_code, failure.error_code) == (404, 40401)


def test_13_deleted_only_versions(registry: RegistryService) -> None:
    client, name = registry.client(), subject()
    client.register_schema(name, record("V", {"name": "a", "type": "int"}))
    client.register_schema(name, record("V", {"name": "a", "type": "int"}, {"name": "b", "type": "int", "default": 0}))
    client.delete_version(name, 1)
    assert client.get_versions(name, deleted_only=True) == [1]
    assert httpx.get(f"{registry.url}/subjects/{name}/versions?deletedOnly=true").json() == [1]
    assert client.get_versions(name) == [2]


def test_14_soft_deleting_a_referrer_releases_the_reference(registry: RegistryService) -> None:
    client, referenced, referrer = registry.client(), subject(), subject()
    client.register_schema(referenced, record("Ref14", {"name": "city", "type": "string"}))
    holder = Schema(
        json.dumps({"type": "record", "name": "Holder14", "fields": [{"name": "a", "type": "Ref14"}]}),
        "AVRO",
        [SchemaReference("Ref14", referenced, 1)],
    )
    holder_id = client.register_schema(referrer, holder)
    assert client.get_referenced_by(referenced, 1) == [holder_id]
    assert error_of(client.delete_version, referenced, 1).error_code == 42206
    client.delete_subject(referrer)
    assert client.get_referenced_by(referenced, 1) == []
    assert client.delete_version(referenced, 1) == 1


def test_15_accept_application_json_is_answered_as_application_json(registry: RegistryService) -> None:
    def content_type(accept: str | None) -> str:
        headers = {} if accept is None else {"Accept": accept}
        return httpx.get(f"{registry.url}/subjects", headers=headers).headers["Content-Type"].split(";")[0]

    assert content_type("application/json") == "application/json"
    assert content_type(None) == SR_JSON
    assert content_type("*/*") == SR_JSON
    assert content_type(f"{SR_JSON}, application/json") == SR_JSON
    assert content_type("application/vnd.schemaregistry+json") == "application/vnd.schemaregistry+json"
    missing = httpx.get(f"{registry.url}/schemas/ids/999999999", headers={"Accept": "application/json"})
    assert missing.headers["Content-Type"].startswith("application/json") and missing.json()["error_code"] == 40403


def test_records_written_before_canonical_storage_keep_their_ids(registry: RegistryService) -> None:
    """A `_schemas` record holding a schema as submitted (pretty JSON, another key order) loads unchanged, and every
    spelling of that schema registered afterwards maps to its id instead of minting a new one."""
    kafka = KafkaSettings(bootstrap_servers=registry.kafka.bootstrap)
    topic = f"_schemas_{uuid.uuid4().hex[:8]}"
    ensure_topic(kafka, topic)
    old = records.SchemaValue("legacy-value", 1, 7, SUBMITTED)
    producer = clients.producer(kafka)
    producer.produce(topic, key=records.schema_key("legacy-value", 1), value=old.encode())
    assert producer.flush(30) == 0

    process = RegistryProcess(registry.kafka.bootstrap, topic, registry.log_dir).start()
    try:
        assert httpx.get(f"{process.url}/schemas/ids/7").json()["schema"] == SUBMITTED
        before = registry.end_offset(topic)
        client = process.client()
        assert client.register_schema("legacy-value", Schema(CANONICAL, "AVRO")) == 7
        assert registry.end_offset(topic) == before, "the old record's schema is already registered"
        assert client.register_schema("another-value", Schema(SUBMITTED, "AVRO")) == 7
        assert client.register_schema("new-value", Schema('"int"', "AVRO")) == 8
    finally:
        assert process.terminate() == 0
