"""Headwater's Avro serde against confluent-kafka's AvroSerializer/AvroDeserializer, through the real registry."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference
from confluent_kafka.schema_registry.avro import AvroDeserializer as ConfluentDeserializer
from confluent_kafka.schema_registry.avro import AvroSerializer as ConfluentSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from schemas.catalog import entries, load_schema
from schemas.serde import (
    AvroDeserializer,
    AvroSerializer,
    DecodeError,
    EncodeError,
    SerdeError,
    UnknownSchemaError,
    WireFormatError,
    header,
)
from tests.fixtures.registry import RegistryService

ORDER = {
    "order_number": "SO-1001",
    "source_system": "sap",
    "customer_id": "C-42",
    "customer_name": "Müller GmbH",
    "customer_email": "einkauf@mueller.example",
    "customer_phone": "+49 30 1234567",
    "status": "open",
    "ordered_at": datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
    "lines": [
        {"line_number": 1, "sku": "A-1", "description": "Widget", "quantity": 3.0, "unit_price": 9.99},
        {"line_number": 2, "sku": "B-7", "description": None, "quantity": 1.0, "unit_price": 120.0},
    ],
    "amount": 149.97,
    "tax_amount": 23.94,
    "currency": "EUR",
    "shipping_address": {
        "street": "Hauptstr. 1",
        "city": "Berlin",
        "postal_code": "10115",
        "region": None,
        "country": "DE",
    },
    "notes": "Bitte vor 10 Uhr liefern, sehr zufrieden mit dem letzten Auftrag.",
    "created_at": datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
    "updated_at": datetime(2024, 5, 2, 8, 0, tzinfo=UTC),
}


def topic() -> str:
    return f"erp.orders{uuid.uuid4().hex[:8]}.raw"


def context(name: str) -> SerializationContext:
    return SerializationContext(name, MessageField.VALUE)


def test_confluent_serializer_bytes_equal_ours_and_decode_both_ways(registry: RegistryService) -> None:
    name = topic()
    schema = json.dumps(load_schema("erp/order"))
    theirs = ConfluentSerializer(registry.client(), schema)
    their_bytes = theirs(ORDER, context(name))

    ours = AvroSerializer(registry.client(), f"{name}-value", schema)
    our_bytes = ours.encode(ORDER)
    assert our_bytes == their_bytes
    assert our_bytes[0] == 0 and int.from_bytes(our_bytes[1:5], "big") == ours.schema_id

    decoded, schema_id = AvroDeserializer(registry.client()).decode_with_id(their_bytes)
    assert decoded == ORDER and schema_id == ours.schema_id
    assert ConfluentDeserializer(registry.client())(our_bytes, context(name)) == ORDER


def test_every_catalog_schema_round_trips_with_confluent(registry: RegistryService) -> None:
    client = registry.client()
    for entry in entries():
        schema = entry.load()
        record = _minimal_record(schema)
        subject = f"{uuid.uuid4().hex[:6]}.{entry.subject}"
        ours = AvroSerializer(client, subject, schema)
        data = ours.encode(record)
        assert ConfluentDeserializer(client)(data, context(subject)) == AvroDeserializer(client).decode(data)


def _minimal_record(schema: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field in schema["fields"]:
        if "default" in field:
            continue
        kind = field["type"]
        if isinstance(kind, dict) and kind.get("logicalType") == "timestamp-millis":
            values[field["name"]] = 1_714_566_600_000
        elif kind == "double":
            values[field["name"]] = 10.5
        else:
            values[field["name"]] = f"{field['name']}-1"
    return values


def test_encode_many_and_decode_many_match_single_calls(registry: RegistryService) -> None:
    serializer = AvroSerializer(registry.client(), f"{topic()}-value", load_schema("erp/order"))
    records = [{**ORDER, "order_number": f"SO-{i}"} for i in range(50)]
    encoded = serializer.encode_many(records)
    assert encoded == [serializer.encode(r) for r in records]
    assert AvroDeserializer(registry.client()).decode_many(encoded) == records


def test_reader_schema_reads_old_and_new_versions(registry: RegistryService) -> None:
    subject = f"{topic()}-value"
    v1 = {"type": "record", "name": "Contact", "fields": [{"name": "id", "type": "string"}]}
    v2 = {
        "type": "record",
        "name": "Contact",
        "fields": [{"name": "id", "type": "string"}, {"name": "score", "type": "int", "default": 0}],
    }
    old = AvroSerializer(registry.client(), subject, v1).encode({"id": "a"})
    new = AvroSerializer(registry.client(), subject, v2).encode({"id": "b", "score": 7})
    reader_v2 = AvroDeserializer(registry.client(), reader_schema=v2)
    assert reader_v2.decode(old) == {"id": "a", "score": 0}
    assert reader_v2.decode(new) == {"id": "b", "score": 7}
    assert AvroDeserializer(registry.client(), reader_schema=json.dumps(v1)).decode(new) == {"id": "b"}
    unreadable = {"type": "record", "name": "Contact", "fields": [{"name": "other", "type": "string"}]}
    with pytest.raises(DecodeError):
        AvroDeserializer(registry.client(), reader_schema=unreadable).decode(old)


def test_references_resolve_in_both_serdes(registry: RegistryService) -> None:
    client = registry.client()
    address_subject = f"{topic()}-address"
    address = load_schema("erp/order")["fields"][12]["type"][1]
    client.register_schema(address_subject, Schema(json.dumps(address), "AVRO"))
    holder = {
        "type": "record",
        "name": "Site",
        "namespace": "io.test",
        "fields": [{"name": "where", "type": "io.headwater.common.Address"}],
    }
    refs = [SchemaReference("io.headwater.common.Address", address_subject, 1)]
    value = {"where": ORDER["shipping_address"]}
    data = AvroSerializer(client, f"{topic()}-value", holder, references=refs).encode(value)
    assert AvroDeserializer(registry.client()).decode(data) == value
    assert ConfluentDeserializer(registry.client())(data, context("x")) == value


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", WireFormatError),
        (b"\x00\x00\x01", WireFormatError),
        (b"\x01\x00\x00\x00\x01\x02", WireFormatError),
        (header(2_000_000_000) + b"\x02", UnknownSchemaError),
    ],
)
def test_bytes_not_in_the_wire_format_raise_one_error_family(
    registry: RegistryService, data: bytes, error: type[SerdeError]
) -> None:
    with pytest.raises(error) as caught:
        AvroDeserializer(registry.client()).decode(data)
    assert isinstance(caught.value, SerdeError) and isinstance(caught.value, ValueError)


def test_truncated_body_and_mismatching_records(registry: RegistryService) -> None:
    serializer = AvroSerializer(registry.client(), f"{topic()}-value", load_schema("erp/order"))
    good = serializer.encode(ORDER)
    with pytest.raises(DecodeError):
        AvroDeserializer(registry.client()).decode(good[:20])
    for bad in (
        {**ORDER, "amount": "lots"},
        {k: v for k, v in ORDER.items() if k != "customer_id"},
        {**ORDER, "unknown_field": 1},
    ):
        with pytest.raises(EncodeError):
            serializer.encode(bad)


def test_serializer_without_auto_register_needs_the_schema_registered(registry: RegistryService) -> None:
    serializer = AvroSerializer(registry.client(), f"{topic()}-value", load_schema("crm/contact"), auto_register=False)
    with pytest.raises(UnknownSchemaError):
        serializer.encode(_minimal_record(load_schema("crm/contact")))
