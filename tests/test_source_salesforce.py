"""Salesforce source against a fake org on pytest-httpserver (documented REST shapes) and the real broker and
registry: incremental SOQL on SystemModstamp/Id, nextRecordsUrl paging, queryAll deletions as tombstones, session
expiry, throttling, malformed answers to the dead-letter topic, and a restart that leaves no gap."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from connectors.base import ConnectorError, RetryableError
from connectors.offsets import OffsetStore
from connectors.sources.salesforce import SalesforceConfig, SalesforceSource
from headwater.envelope import ERROR_CLASS, ERROR_STAGE, SOURCE, TRACE_ID
from headwater.settings import KafkaSettings
from tests.connect_support import decode_all, end_offset, header, read_topic, running_source, wait_for
from tests.fake_salesforce import FakeSalesforce, contact, error, sf_time

CLIENT_ID = "3MVG9-client-id-value"
PASSWORD = "hunter2-password-and-token"


def make_source(fake: FakeSalesforce, topic: str, name: str | None = None, **extra: Any) -> SalesforceSource:
    """A source named after its topic: cursors of earlier tests in the shared offsets topic never apply."""
    config = SalesforceConfig.model_validate(
        {
            "instance_url": fake.url,
            "client_id": CLIENT_ID,
            "client_secret": fake.client_secret,
            "objects": [{"name": "Contact", "topic": topic}],
            "poll_interval": 0.2,
            "request_timeout": 5,
            **extra,
        }
    )
    return SalesforceSource(name or f"sf-{topic}", config)


def test_pages_incrementally_with_ties_deletions_and_lineage(httpserver: HTTPServer, kafka: Any, registry: Any) -> None:
    fake = FakeSalesforce(httpserver, page_size=3)
    # three records share one modstamp: the Id breaks the tie
    fake.records = [
        contact("003000000000001AAA", sf_time(1)),
        contact("003000000000003AAA", sf_time(2)),
        contact("003000000000002AAA", sf_time(2)),
        contact("003000000000004AAA", sf_time(2)),
        contact("003000000000005AAA", sf_time(3, 250)),
        contact("003000000000006AAA", sf_time(4)),
        contact("003000000000007AAA", sf_time(5)),
    ]
    topic = kafka.create_topic()
    with running_source(make_source(fake, topic), kafka, registry):
        wait_for(lambda: end_offset(kafka.bootstrap, topic) >= 7, what="the first 7 contacts")
        fake.records.append(contact("003000000000002AAA", sf_time(9), Email="new@example.com"))
        fake.records.append(contact("003000000000006AAA", sf_time(9, 500), deleted=True))
        wait_for(lambda: end_offset(kafka.bootstrap, topic) >= 9, what="the update and the deletion")

    messages = read_topic(kafka.bootstrap, topic, 9)
    records = decode_all(registry, messages)
    assert [key for key, _ in records] == [
        "003000000000001AAA",
        "003000000000002AAA",
        "003000000000003AAA",
        "003000000000004AAA",
        "003000000000005AAA",
        "003000000000006AAA",
        "003000000000007AAA",
        "003000000000002AAA",
        "003000000000006AAA",
    ]
    first = records[0][1]
    assert first is not None
    assert first["source_system"] == "salesforce"
    assert first["last_name"] == "Doe"
    assert first["mailing_address"] == {
        "street": None,
        "city": "Berlin",
        "postal_code": None,
        "region": None,
        "country": "DE",
    }
    assert first["updated_at"].isoformat() == "2024-03-01T10:01:00+00:00"
    assert records[7][1] is not None and records[7][1]["email"] == "new@example.com"
    assert records[8][1] is None, "a deletion read through queryAll is a tombstone"
    assert messages[8].value() is None
    assert header(messages[4], SOURCE) == f"sf-{topic}/Contact@2024-03-01T10:03:00.250+0000|003000000000005AAA"
    assert header(messages[0], TRACE_ID)

    assert set(fake.endpoints) == {"queryAll"}
    assert fake.soql[0] == (
        "SELECT AccountId, CreatedDate, Description, Email, FirstName, Id, IsDeleted, LastName, MailingCity, "
        "MailingCountry, MailingPostalCode, MailingState, MailingStreet, Phone, SystemModstamp, Title "
        "FROM Contact ORDER BY SystemModstamp, Id"
    )
    after_first_run = (
        "WHERE (SystemModstamp > 2024-03-01T10:05:00.000Z"
        " OR (SystemModstamp = 2024-03-01T10:05:00.000Z AND Id > '003000000000007AAA'))"
    )
    assert after_first_run in fake.soql[1]
    assert len([q for q in fake.soql if "WHERE" not in q]) == 1, "only the very first query reads from the start"
    settings = KafkaSettings.model_validate({"bootstrap.servers": kafka.bootstrap})
    assert OffsetStore(settings).load(f"sf-{topic}") == {
        "Contact": {"modstamp": sf_time(9, 500), "id": "003000000000006AAA"}
    }


def test_expired_session_logs_in_again_once_then_fails_clearly(httpserver: HTTPServer) -> None:
    fake = FakeSalesforce(httpserver)
    fake.records = [contact("003000000000001AAA", sf_time(1))]
    source = make_source(fake, "crm.contacts.raw")
    try:
        assert len(source.fetch(None).records) == 1
        assert len(fake.logins) == 1
        assert fake.logins[0]["grant_type"] == "client_credentials"

        fake.expire_sessions()
        fake.records.append(contact("003000000000002AAA", sf_time(2)))
        batch = source.fetch({"Contact": {"modstamp": sf_time(1), "id": "003000000000001AAA"}})
        assert [r.key for r in batch.records] == ["003000000000002AAA"]
        assert len(fake.logins) == 2, "one new login after INVALID_SESSION_ID"

        fake.expire_sessions()
        fake.refuse_new_sessions = True
        with pytest.raises(ConnectorError, match="session expired again right after a new login"):
            source.fetch(None)
        assert len(fake.logins) == 3, "re-login is tried once, not in a loop"
    finally:
        source.close()


def test_wrong_credentials_are_a_clear_error(httpserver: HTTPServer) -> None:
    fake = FakeSalesforce(httpserver)
    source = make_source(fake, "crm.contacts.raw", client_secret="wrong")
    try:
        with pytest.raises(ConnectorError, match=r"Salesforce login refused \(400\): check client id/secret"):
            source.fetch(None)
    finally:
        source.close()


def test_throttling_and_server_errors_are_retried_with_backoff(httpserver: HTTPServer) -> None:
    fake = FakeSalesforce(httpserver)
    fake.records = [contact("003000000000001AAA", sf_time(1))]
    fake.fail_next(
        error(429, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", **{"Retry-After": "1"}),
        error(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable"),
        Response("<html>Bad Gateway</html>", status=502, content_type="text/html"),
    )
    source = make_source(fake, "crm.contacts.raw")
    try:
        started = time.monotonic()
        batch = source.fetch(None)
        elapsed = time.monotonic() - started
        assert [r.key for r in batch.records] == ["003000000000001AAA"]
        assert not fake.faults
        assert elapsed >= 1.0 + 1.0 + 2.0 - 0.1, "Retry-After is honoured, then 5xx answers back off exponentially"

        fake.fail_next(*(error(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred") for _ in range(3)))
        persistent = make_source(fake, "crm.contacts.raw", max_retries=2)
        try:
            with pytest.raises(RetryableError, match=r"unavailable after 3 attempts \(HTTP 500\)"):
                persistent.fetch(None)
        finally:
            persistent.close()
    finally:
        source.close()


def test_malformed_pages_and_incomplete_records_are_dead_lettered(
    httpserver: HTTPServer, kafka: Any, registry: Any
) -> None:
    fake = FakeSalesforce(httpserver, page_size=10)
    broken_body = b'{"totalSize": 2, "done": true, "records": [{"attributes": {"type": "Contact"}, "Id": "003'
    fake.fail_next(Response(broken_body, status=200, content_type="application/json"))
    fake.records = [
        contact("003000000000001AAA", sf_time(1)),
        contact("003000000000002AAA", sf_time(2), last_name=None),
        contact("003000000000003AAA", sf_time(3)),
    ]
    fake.records.append({**contact("003000000000004AAA", sf_time(4)), "Id": None})
    topic = kafka.create_topic()
    dlq = topic.removesuffix(".raw") + ".dlq"
    kafka.create_topic(dlq)
    with running_source(make_source(fake, topic), kafka, registry):
        wait_for(lambda: end_offset(kafka.bootstrap, topic) >= 2, what="the good contacts")
        wait_for(lambda: end_offset(kafka.bootstrap, dlq) >= 3, what="three dead letters")

    good = decode_all(registry, read_topic(kafka.bootstrap, topic, 2))
    assert [key for key, _ in good] == ["003000000000001AAA", "003000000000003AAA"]
    letters = read_topic(kafka.bootstrap, dlq, 3)
    assert [header(m, ERROR_STAGE) for m in letters] == ["source"] * 3
    malformed, missing_name, missing_id = letters
    assert malformed.value() == broken_body, "the raw payload is kept untouched"
    assert header(malformed, ERROR_CLASS) == "MalformedJSON"
    assert header(malformed, SOURCE) == f"sf-{topic}/Contact"
    assert missing_name.key() == b"003000000000002AAA"
    assert header(missing_name, ERROR_CLASS) == "MissingField"
    assert "last_name" in (header(missing_name, "hw-error-message") or "")
    assert b'"LastName": null' in (missing_name.value() or b"")
    assert header(missing_id, ERROR_CLASS) == "MissingField"
    assert end_offset(kafka.bootstrap, topic) == 2


def test_restart_mid_run_resumes_from_the_committed_cursor(httpserver: HTTPServer, kafka: Any, registry: Any) -> None:
    fake = FakeSalesforce(httpserver, page_size=4)
    fake.records = [contact(f"0030000000000{i:02d}AAA", sf_time(i // 3, i)) for i in range(20)]
    fake.hold_page = 2
    topic = kafka.create_topic()
    with running_source(make_source(fake, topic), kafka, registry) as stop:
        wait_for(lambda: end_offset(kafka.bootstrap, topic) >= 8, what="the first two pages")
        wait_for(lambda: fake.pages_served >= 3, what="the third page to be requested")
        # stopped while the third page is in flight: it is fetched but never delivered
        stop.set()
        fake.release.set()
    assert end_offset(kafka.bootstrap, topic) == 8

    fake.hold_page = None
    queries_before_restart = len(fake.soql)
    with running_source(make_source(fake, topic), kafka, registry):
        wait_for(lambda: end_offset(kafka.bootstrap, topic) >= 20, what="the rest after the restart")
    keys = [m.key() for m in read_topic(kafka.bootstrap, topic, 20)]
    assert keys == [f"0030000000000{i:02d}AAA".encode() for i in range(20)], "no gap and no duplicate"
    # The restarted source's first query starts after the last committed record; later polls move on from there.
    resumed = fake.soql[queries_before_restart]
    assert "Id > '003000000000007AAA'" in resumed, resumed


def test_credentials_never_reach_the_logs(httpserver: HTTPServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeSalesforce(httpserver)
    fake.records = [
        contact("003000000000001AAA", sf_time(1)),
        contact("003000000000002AAA", sf_time(2), last_name=None),
    ]
    fake.fail_next(error(503, "SERVER_UNAVAILABLE", "down"))
    source = make_source(fake, "crm.contacts.raw", username="integration@example.com", password=PASSWORD)
    refusals: list[str] = []
    try:
        batch = source.fetch(None)
        assert len(batch.records) == 1 and len(batch.failures) == 1
        fake.expire_sessions()
        fake.refuse_new_sessions = True
        with pytest.raises(ConnectorError) as expired:
            source.fetch(None)
        refusals.append(str(expired.value))
    finally:
        source.close()
    assert fake.logins[0]["password"] == PASSWORD and fake.logins[0]["grant_type"] == "password"
    wrong = make_source(fake, "crm.contacts.raw", client_secret="wrong-" + fake.client_secret)
    with pytest.raises(ConnectorError) as refused:
        wrong.fetch(None)
    wrong.close()
    refusals.append(str(refused.value))
    text = caplog.text + " ".join(refusals) + repr(source.config) + str(source.config.model_dump())
    assert "event=salesforce_login" in caplog.text and "event=salesforce_session_expired" in caplog.text
    for secret in (fake.client_secret, PASSWORD, CLIENT_ID, "00D000000000001!"):
        assert secret not in text
