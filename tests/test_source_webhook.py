"""Webhook ingest with a real aiohttp client against the real broker and registry: Salesforce Outbound Messages
acked only after the broker acknowledged, HubSpot v3 signatures and stale timestamps, generic JSON validated
against the latest registry schema, and 503 while the broker is unreachable."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from confluent_kafka.schema_registry import Schema

from connectors.connector_index import lookup
from connectors.sources.webhook import WebhookSource, hubspot_signature
from headwater.envelope import ERROR_CLASS, ERROR_STAGE, SOURCE, TRACE_ID
from headwater.ports import free_port
from schemas.serde import split_header
from tests.connect_support import decode_all, end_offset, header, read_topic, start_connect, write_config
from tests.webhook_support import serving

SECRET = "hubspot-app-client-secret-value"
ORG = "00D000000000001EAA"


def outbound_message(*notifications: tuple[str, str, Mapping[str, str | None]], org: str = ORG) -> bytes:
    """A Salesforce Outbound Message as Salesforce sends it: (notification id, sObject type, fields)."""
    parts = []
    for notification_id, kind, fields in notifications:
        values = "".join(
            f'<sf:{k} xsi:nil="true"/>' if v is None else f"<sf:{k}>{v}</sf:{k}>" for k, v in fields.items()
        )
        parts.append(
            f"<Notification><Id>{notification_id}</Id>"
            f'<sObject xsi:type="sf:{kind}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">{values}</sObject>'
            "</Notification>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        '<soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{org}</OrganizationId><ActionId>04k000000000001AAA</ActionId>"
        '<SessionId xsi:nil="true"/>'
        "<EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/59.0/00D000000000001</EnterpriseUrl>"
        "<PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/59.0/00D000000000001</PartnerUrl>"
        f"{''.join(parts)}</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


CONTACT: dict[str, str | None] = {
    "Id": "003000000000001AAA",
    "FirstName": "Jane",
    "LastName": "Doe",
    "Email": "jane@example.com",
    "MailingCity": "Berlin",
    "CreatedDate": "2024-01-15T08:30:00.000Z",
    "SystemModstamp": "2024-03-01T10:00:00.000Z",
}


def test_registered_by_name() -> None:
    assert lookup("webhook") is WebhookSource


async def test_salesforce_outbound_message_is_acked_after_the_broker(kafka: Any, registry: Any) -> None:
    topic = kafka.create_topic()
    dlq = topic.removesuffix(".raw") + ".dlq"
    kafka.create_topic(dlq)
    config: dict[str, Any] = {
        "salesforce_objects": [{"name": "Contact", "topic": topic}],
        "salesforce_organization_id": ORG[:15],
    }
    async with serving(kafka.bootstrap, registry.url, **config) as (session, base, name):
        body = outbound_message(
            ("04l000000000001AAA", "Contact", CONTACT),
            ("04l000000000002AAA", "Contact", {**CONTACT, "Id": "003000000000002AAA", "LastName": None}),
        )
        async with session.post(f"{base}/salesforce/outbound", data=body, headers={"Content-Type": "text/xml"}) as r:
            assert r.status == 200
            ack = await r.text()
        # the Ack came after the broker acknowledged: the record is already readable
        assert end_offset(kafka.bootstrap, topic) == 1
        assert end_offset(kafka.bootstrap, dlq) == 1
        assert "<Ack>true</Ack>" in ack and "notificationsResponse" in ack

        other_org = outbound_message(("04l000000000003AAA", "Contact", CONTACT), org="00D999999999999AAA")
        async with session.post(f"{base}/salesforce/outbound", data=other_org) as r:
            assert r.status == 403
            assert "OrganizationId 00D999999999999AAA" in await r.text()
        async with session.post(f"{base}/salesforce/outbound", data=b"<soapenv:Envelope") as r:
            assert r.status == 400
            assert "not well-formed XML" in await r.text()
        lead = outbound_message(("04l000000000004AAA", "Lead", {"Id": "00Q000000000001AAA"}))
        async with session.post(f"{base}/salesforce/outbound", data=lead) as r:
            assert r.status == 400 and "sObject type Lead is not configured" in await r.text()

    messages = read_topic(kafka.bootstrap, topic, 1)
    [(key, value)] = decode_all(registry, messages)
    assert key == "003000000000001AAA"
    assert value is not None and value["last_name"] == "Doe" and value["source_system"] == "salesforce"
    assert value["mailing_address"]["city"] == "Berlin"
    assert header(messages[0], SOURCE) == f"{name}/outbound/04l000000000001AAA|003000000000001AAA"
    assert header(messages[0], TRACE_ID)
    [letter] = read_topic(kafka.bootstrap, dlq, 1)
    assert letter.key() == b"003000000000002AAA"
    assert header(letter, ERROR_STAGE) == "source" and header(letter, ERROR_CLASS) == "MissingField"
    assert letter.value() == body, "the raw message is kept untouched"
    assert header(letter, SOURCE) == f"{name}/outbound/04l000000000002AAA|003000000000002AAA"
    assert end_offset(kafka.bootstrap, topic) == 1


def signed(method: str, url: str, body: bytes, age_ms: int = 0, secret: str = SECRET) -> dict[str, str]:
    timestamp = str(int(time.time() * 1000) - age_ms)
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Request-Timestamp": timestamp,
        "X-HubSpot-Signature-v3": hubspot_signature(secret, method, url, body, timestamp),
    }


async def test_hubspot_webhook_signature_and_timestamp_are_verified(kafka: Any, registry: Any) -> None:
    topic = kafka.create_topic()
    config: dict[str, Any] = {"hubspot_client_secret": SECRET, "hubspot_topic": topic}
    async with serving(kafka.bootstrap, registry.url, **config) as (session, base, name):
        url = f"{base}/hubspot/webhooks"
        events = [
            {
                "eventId": 1001,
                "subscriptionId": 25,
                "portalId": 62515,
                "appId": 54321,
                "occurredAt": 1709287200000,
                "subscriptionType": "contact.propertyChange",
                "attemptNumber": 0,
                "objectId": 123,
                "changeSource": "CRM",
                "propertyName": "email",
                "propertyValue": "ada@example.com",
            },
            {
                "eventId": 1002,
                "subscriptionId": 26,
                "portalId": 62515,
                "occurredAt": 1709287201000,
                "subscriptionType": "contact.creation",
                "attemptNumber": 0,
                "objectId": 124,
            },
        ]
        body = json.dumps(events).encode()
        async with session.post(url, data=body, headers=signed("POST", url, body)) as r:
            assert r.status == 200, await r.text()
            assert await r.json() == {"accepted": 2, "dead_lettered": 0}
        assert end_offset(kafka.bootstrap, topic) == 2

        async with session.post(url, data=body, headers=signed("POST", url, body, secret="not-the-secret")) as r:
            assert r.status == 401 and "Signature-v3 does not match" in await r.text()
        tampered = body.replace(b"ada@example.com", b"eve@example.com")
        async with session.post(url, data=tampered, headers=signed("POST", url, body)) as r:
            assert r.status == 401
        async with session.post(url, data=body, headers=signed("POST", url, body, age_ms=6 * 60 * 1000)) as r:
            assert r.status == 401 and "older than 5 minutes" in await r.text()
        async with session.post(url, data=body) as r:
            assert r.status == 401
        assert end_offset(kafka.bootstrap, topic) == 2, "nothing rejected reached the topic"

    messages = read_topic(kafka.bootstrap, topic, 2)
    records = decode_all(registry, messages)
    assert [key for key, _ in records] == ["123", "124"]
    first = records[0][1]
    assert first is not None and first["subscription_type"] == "contact.propertyChange"
    assert first["property_value"] == "ada@example.com" and first["occurred_at"].year == 2024
    assert header(messages[0], SOURCE) == f"{name}/hubspot/1001|123"


EVENT_V1: dict[str, Any] = {
    "type": "record",
    "name": "PageView",
    "namespace": "io.headwater.test",
    "fields": [
        {"name": "view_id", "type": "string"},
        {"name": "url", "type": "string"},
        {"name": "seconds", "type": "int"},
        {"name": "viewed_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}
EVENT_V2 = {
    **EVENT_V1,
    "fields": [*EVENT_V1["fields"], {"name": "referrer", "type": ["null", "string"], "default": None}],
}


async def test_generic_json_is_validated_against_the_latest_schema(kafka: Any, registry: Any) -> None:
    topic = kafka.create_topic()
    client = registry.client()
    client.register_schema(f"{topic}-value", Schema(json.dumps(EVENT_V1), "AVRO"))
    latest = client.register_schema(f"{topic}-value", Schema(json.dumps(EVENT_V2), "AVRO"))
    view = {"view_id": "v-1", "url": "/pricing", "seconds": 12, "viewed_at": 1709287200000, "referrer": "search"}
    async with serving(kafka.bootstrap, registry.url) as (session, base, _name):
        url = f"{base}/topics/{topic}"
        async with session.post(url, json=view) as r:
            assert r.status == 200, await r.text()
            assert await r.json() == {"accepted": 1}
        assert end_offset(kafka.bootstrap, topic) == 1, "2xx only after the broker acknowledged"
        batch = [{**view, "view_id": "v-2", "referrer": None}, {**view, "view_id": "v-3"}]
        async with session.post(url, json=batch) as r:
            assert r.status == 200 and await r.json() == {"accepted": 2}

        refusals = [
            ({k: v for k, v in view.items() if k != "url"}, 422, "field 'url' does not match"),
            ({**view, "seconds": "twelve"}, 422, "field 'seconds' does not match"),
            ({**view, "colour": "blue"}, 422, "field 'colour' is not in the schema"),
            ([view, {**view, "viewed_at": "yesterday"}], 422, "[1] field 'viewed_at' does not match"),
            ([], 400, "empty list"),
            ("just a string", 400, "expected a JSON object"),
        ]
        for payload, status, reason in refusals:
            async with session.post(url, json=payload) as r:
                assert r.status == status, (payload, await r.text())
                assert reason in (await r.json())["error"]
        async with session.post(url, data=b"{not json", headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400 and "not JSON" in (await r.json())["error"]
        async with session.post(f"{base}/topics/{topic}.nothing", json=view) as r:
            assert r.status == 404 and "no schema registered" in (await r.json())["error"]
        async with session.post(f"{base}/topics/_headwater.connect-offsets", json=view) as r:
            assert r.status == 400
    assert end_offset(kafka.bootstrap, topic) == 3, "nothing refused reached the topic"
    messages = read_topic(kafka.bootstrap, topic, 3)
    assert [m.key() for m in messages] == [b"v-1", b"v-2", b"v-3"]
    assert {split_header(m.value() or b"") for m in messages} == {latest}
    assert [value["referrer"] for _key, value in decode_all(registry, messages) if value] == ["search", None, "search"]


async def test_broker_unreachable_answers_503(kafka: Any, registry: Any) -> None:
    topic = kafka.create_topic()
    registry.client().register_schema(f"{topic}-value", Schema(json.dumps(EVENT_V1), "AVRO"))
    closed = f"127.0.0.1:{free_port()}"
    view = {"view_id": "v-1", "url": "/", "seconds": 1, "viewed_at": 1709287200000}
    config: dict[str, Any] = {"salesforce_objects": [{"name": "Contact", "topic": topic}]}
    async with serving(closed, registry.url, ack_timeout_ms=1500, **config) as (session, base, _name):
        async with session.post(f"{base}/topics/{topic}", json=view) as r:
            assert r.status == 503
            assert r.headers["Retry-After"] == "30"
            assert "unavailable" in (await r.json())["error"]
        body = outbound_message(("04l000000000001AAA", "Contact", CONTACT))
        async with session.post(f"{base}/salesforce/outbound", data=body) as r:
            assert r.status == 503
            text = await r.text()
            assert "<Ack>" not in text and "soapenv:Server" in text, "no Ack: Salesforce will send it again"
    assert end_offset(kafka.bootstrap, topic) == 0


async def test_served_by_connect_run(kafka: Any, registry: Any, tmp_path: Path) -> None:
    topic = kafka.create_topic()
    registry.client().register_schema(f"{topic}-value", Schema(json.dumps(EVENT_V1), "AVRO"))
    port = free_port()
    config = write_config(
        tmp_path / "webhook.yaml",
        kafka.bootstrap,
        registry.url,
        [{"name": f"wh-{topic}", "connector": "webhook", "config": {"port": port, "topics": [topic]}}],
    )
    status_port = free_port()
    process = start_connect(config, tmp_path / "connect.log", "--status-port", str(status_port))
    view = {"view_id": "v-9", "url": "/", "seconds": 3, "viewed_at": 1709287200000}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            deadline = time.monotonic() + 60
            while True:
                try:
                    async with session.post(f"http://127.0.0.1:{port}/topics/{topic}", json=view) as r:
                        assert r.status == 200, await r.text()
                        break
                except aiohttp.ClientConnectionError:
                    assert process.poll() is None, (tmp_path / "connect.log").read_text()
                    assert time.monotonic() < deadline, "connect run did not start listening"
                    await asyncio.sleep(0.2)
            async with session.post(f"http://127.0.0.1:{port}/topics/{topic}.other", json=view) as r:
                assert r.status == 403
            status = f"http://127.0.0.1:{status_port}"
            async with session.get(f"{status}/healthz") as r:
                assert r.status == 200
            async with session.get(f"{status}/readyz") as r:
                assert r.status == 200 and (await r.json()) == {"ready": True}
            async with session.get(f"{status}/metrics") as r:
                metrics = await r.text()
            produced = f'headwater_connector_records_total{{connector="wh-{topic}",outcome="produced"}} 1.0'
            assert produced in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 30)
    assert process.returncode == 0, (tmp_path / "connect.log").read_text()
    assert [m.key() for m in read_topic(kafka.bootstrap, topic, 1)] == [b"v-9"]
