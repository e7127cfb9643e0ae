"""HubSpot source against a fake portal on pytest-httpserver (documented CRM search shapes) and the real broker
and registry: search on the last-modified property with `after` paging, the 10,000-result window moved by the
cursor (also when one timestamp fills a whole window), throttling, an expired token, malformed answers."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from connectors.base import ConnectorError, Cursor, RetryableError, SourceRecord
from connectors.connector_index import lookup
from connectors.offsets import OffsetStore
from connectors.sources.hubspot import HubSpotConfig, HubSpotSource
from headwater.envelope import ERROR_CLASS, ERROR_STAGE, SOURCE, TRACE_ID
from headwater.settings import KafkaSettings
from tests.connect_support import decode_all, end_offset, header, read_topic, running_source, wait_for
from tests.fake_hubspot import FakeHubSpot, hs_company, hs_contact, hs_error, hs_time, millis


def make_source(fake: FakeHubSpot, topic: str, obj: str = "contacts", **extra: Any) -> HubSpotSource:
    config = HubSpotConfig.model_validate(
        {
            "access_token": fake.token,
            "host": fake.url,
            "objects": [{"name": obj, "topic": topic}],
            "page_size": 3,
            "poll_interval": 0.2,
            "request_timeout": 5,
            **extra,
        }
    )
    return HubSpotSource(f"hs-{topic}", config)


def drain(source: HubSpotSource, cursor: Cursor | None = None, limit: int = 100) -> tuple[list[SourceRecord], Cursor]:
    """Fetch until the source has nothing more, as the source loop does; returns every record and the cursor."""
    records: list[SourceRecord] = []
    for _ in range(limit):
        batch = source.fetch(cursor)
        records.extend(batch.records)
        cursor = batch.cursor
        if not batch.more:
            return records, cursor
    raise AssertionError(f"still more after {limit} fetches")


def test_registered_by_name() -> None:
    assert lookup("hubspot") is HubSpotSource


def test_searches_incrementally_with_after_paging_and_lineage(
    httpserver: HTTPServer, kafka: Any, registry: Any
) -> None:
    fake = FakeHubSpot(httpserver)
    for i in range(1, 8):
        fake.upsert(hs_contact(100 + i, hs_time(i)))
    topic = kafka.create_topic()
    with running_source(make_source(fake, topic), kafka, registry):
        wait_for(lambda: end_offset(kafka.bootstrap, topic) >= 7, what="the first 7 contacts")
        fake.upsert(hs_contact(103, hs_time(30), email="changed@example.com"))
        wait_for(lambda: end_offset(kafka.bootstrap, topic) >= 8, what="the changed contact")

    messages = read_topic(kafka.bootstrap, topic, 8)
    records = decode_all(registry, messages)
    assert [key for key, _ in records] == [str(100 + i) for i in range(1, 8)] + ["103"]
    first = records[0][1]
    assert first is not None
    assert first["contact_id"] == "101" and first["source_system"] == "hubspot"
    assert first["mailing_address"] == {
        "street": None,
        "city": "Leeds",
        "postal_code": None,
        "region": None,
        "country": "GB",
    }
    assert first["lifecycle_stage"] == "lead"
    assert first["updated_at"].isoformat() == "2024-03-01T10:00:01+00:00"
    assert records[7][1] is not None and records[7][1]["email"] == "changed@example.com"
    assert header(messages[7], SOURCE) == f"hs-{topic}/contacts@2024-03-01T10:00:30.000Z|103"
    assert header(messages[0], TRACE_ID)

    first_search, second_page = fake.bodies[0], fake.bodies[1]
    assert first_search["filterGroups"] == []
    assert first_search["sorts"] == [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]
    assert "after" not in first_search and second_page["after"] == "3" and fake.bodies[2]["after"] == "6"
    assert {"hs_object_id", "lastmodifieddate", "lastname"} <= set(first_search["properties"])
    incremental = fake.bodies[3]
    assert incremental["filterGroups"] == [
        {"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(millis(hs_time(7)))}]}
    ]
    settings = KafkaSettings.model_validate({"bootstrap.servers": kafka.bootstrap})
    assert OffsetStore(settings).load(f"hs-{topic}") == {"contacts": {"since": millis(hs_time(30)), "ids": ["103"]}}


def test_search_window_is_never_passed_the_cursor_moves_instead(httpserver: HTTPServer) -> None:
    fake = FakeHubSpot(httpserver, window=7)
    # pairs of companies share a timestamp, so restarts land inside ties
    for i in range(20):
        fake.upsert(hs_company(500 + i, hs_time(i // 2)))
    source = make_source(fake, "crm.accounts.raw", obj="companies", search_window=7)
    try:
        records, cursor = drain(source)
    finally:
        source.close()
    assert [r.key for r in records] == [str(500 + i) for i in range(20)], "every company exactly once, in order"
    assert all(int(b.get("after", 0)) + b["limit"] <= 7 for b in fake.bodies)
    restarts = [b for b in fake.bodies if b["filterGroups"] and "after" not in b]
    assert len(restarts) >= 3, "the search started over from the cursor"
    assert restarts[0]["filterGroups"][0]["filters"][0]["propertyName"] == "hs_lastmodifieddate"
    assert restarts[0]["filterGroups"][0]["filters"][0]["operator"] == "GTE"
    value = records[0].value
    assert value is not None and value["employee_count"] == 42 and value["annual_revenue"] == 1250000.5
    assert cursor == {"companies": {"since": millis(hs_time(9)), "ids": ["518", "519"]}}


def test_one_timestamp_larger_than_the_window_is_walked_by_id(httpserver: HTTPServer) -> None:
    fake = FakeHubSpot(httpserver, window=6)
    fake.upsert(hs_contact(1, hs_time(0)))
    for i in range(2, 17):
        fake.upsert(hs_contact(i, hs_time(5)))
    fake.upsert(hs_contact(40, hs_time(9)))
    source = make_source(fake, "crm.contacts.raw", search_window=6)
    try:
        records, _cursor = drain(source)
    finally:
        source.close()
    assert sorted(int(r.key) for r in records) == [*range(1, 17), 40]
    assert len(records) == 17, "no duplicates"
    tie_walks = [b for b in fake.bodies if b["sorts"][0]["propertyName"] == "hs_object_id"]
    assert tie_walks, "a window full of one timestamp switches to an id walk"
    filters = tie_walks[0]["filterGroups"][0]["filters"]
    assert filters[0] == {"propertyName": "lastmodifieddate", "operator": "EQ", "value": str(millis(hs_time(5)))}
    assert filters[1]["propertyName"] == "hs_object_id" and filters[1]["operator"] == "GT"


def test_throttling_and_server_errors_are_retried_then_handed_to_the_runner(httpserver: HTTPServer) -> None:
    fake = FakeHubSpot(httpserver)
    fake.upsert(hs_contact(1, hs_time(1)))
    fake.fail_next(
        hs_error(429, "RATE_LIMITS", "You have reached your secondly limit.", **{"Retry-After": "1"}),
        hs_error(502, "SERVICE_UNAVAILABLE", "Bad gateway"),
        Response("upstream timed out", status=504, content_type="text/plain"),
    )
    source = make_source(fake, "crm.contacts.raw")
    try:
        started = time.monotonic()
        records, _cursor = drain(source)
        elapsed = time.monotonic() - started
        assert [r.key for r in records] == ["1"]
        assert not fake.faults
        assert elapsed >= 1.0 + 1.0 + 2.0 - 0.1, "Retry-After is honoured, then 5xx answers back off exponentially"
    finally:
        source.close()
    fake.fail_next(*(hs_error(500, "INTERNAL_ERROR", "oops") for _ in range(3)))
    persistent = make_source(fake, "crm.contacts.raw", max_retries=2)
    with pytest.raises(RetryableError, match=r"unavailable after 3 attempts \(HTTP 500\)"):
        persistent.fetch(None)


def test_expired_token_is_a_clear_error(httpserver: HTTPServer) -> None:
    fake = FakeHubSpot(httpserver)
    fake.upsert(hs_contact(1, hs_time(1)))
    source = make_source(fake, "crm.contacts.raw")
    fake.token = "pat-na1-rotated"
    with pytest.raises(ConnectorError, match="401: the access token is expired, revoked or wrong") as failed:
        source.fetch(None)
    assert not isinstance(failed.value, RetryableError)
    assert len(fake.bodies) == 0


def test_malformed_answers_and_incomplete_records_are_dead_lettered(
    httpserver: HTTPServer, kafka: Any, registry: Any
) -> None:
    fake = FakeHubSpot(httpserver)
    broken = b'{"total": 3, "results": [{"id": "1", "properties": {"hs_object_id": "1"'
    fake.fail_next(Response(broken, status=200, content_type="application/json"))
    fake.upsert(hs_contact(1, hs_time(1)))
    fake.upsert(hs_contact(2, hs_time(2), lastname=None))
    fake.upsert(hs_contact(3, hs_time(3), lastmodifieddate="not a date"))
    fake.upsert(hs_contact(4, hs_time(4)))
    topic = kafka.create_topic()
    dlq = topic.removesuffix(".raw") + ".dlq"
    kafka.create_topic(dlq)
    with running_source(make_source(fake, topic), kafka, registry):
        wait_for(lambda: end_offset(kafka.bootstrap, topic) >= 2, what="the good contacts")
        wait_for(lambda: end_offset(kafka.bootstrap, dlq) >= 3, what="three dead letters")
    assert [k for k, _ in decode_all(registry, read_topic(kafka.bootstrap, topic, 2))] == ["1", "4"]
    letters = read_topic(kafka.bootstrap, dlq, 3)
    assert [header(m, ERROR_STAGE) for m in letters] == ["source"] * 3
    malformed = letters[0]
    missing_name = next(m for m in letters if m.key() == b"2")
    bad_stamp = next(m for m in letters[1:] if m.key() is None)
    assert malformed.value() == broken
    assert header(malformed, ERROR_CLASS) == "MalformedJSON"
    assert header(malformed, SOURCE) == f"hs-{topic}/contacts"
    assert "last_name" in (header(missing_name, "hw-error-message") or "")
    assert b'"lastname": null' in (missing_name.value() or b"")
    assert header(bad_stamp, ERROR_CLASS) == "MissingField"
    assert b'"lastmodifieddate": "not a date"' in (bad_stamp.value() or b"")
    assert end_offset(kafka.bootstrap, topic) == 2


def test_token_never_reaches_the_logs(httpserver: HTTPServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeHubSpot(httpserver, window=4)
    for i in range(1, 9):
        fake.upsert(hs_contact(i, hs_time(i)))
    fake.fail_next(hs_error(503, "SERVICE_UNAVAILABLE", "down"))
    source = make_source(fake, "crm.contacts.raw", search_window=4)
    records, cursor = drain(source)
    assert len(records) == 8
    fake.token = "pat-na1-rotated"
    with pytest.raises(ConnectorError) as expired:
        source.fetch(cursor)
    source.close()
    assert "event=hubspot_retry" in caplog.text and "event=search_window_moved" in caplog.text
    text = caplog.text + str(expired.value) + repr(source.config) + str(source.config.model_dump())
    assert "pat-na1-11111111" not in text
