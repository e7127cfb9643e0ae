"""Local enrichment providers, the enrichment stage's per-record isolation of errors and timeouts, and a provider
outage told apart from a record's failure."""

from __future__ import annotations

import json
import time

import pytest

from streams.enrich import EnrichFailure, EnrichStage, ProviderUnavailable, build
from tests import pipeline_hooks  # noqa: F401  (registers the `flaky` provider)


async def test_sentiment_and_language_write_their_fields() -> None:
    sentiment = build("sentiment", {"text_field": "notes"})
    language = build("language", {"text_field": "notes", "output_field": "lang"})
    records = [
        {"notes": "Great call, they love the product and will recommend us!"},
        {"notes": "Der Kunde ist sehr unzufrieden mit der Lieferung und möchte sein Geld zurück."},
        {"notes": None},
        {"notes": "ok"},
    ]
    stage = EnrichStage([sentiment, language])
    failures, headers = await stage.run(records)
    assert failures == [None] * 4
    assert records[0]["sentiment"] > 0.5 and records[0]["lang"] == "en"
    assert records[1]["lang"] == "de"
    assert records[2]["sentiment"] is None and records[2]["lang"] is None
    assert records[3]["lang"] is None
    sentiment_used, language_used = json.loads(headers[0])
    assert sentiment_used["p"] == "sentiment" and sentiment_used["m"].startswith("vader-")
    assert language_used["p"] == "language" and language_used["m"].startswith("py3langid-")


async def test_a_raising_and_a_hanging_record_fail_alone() -> None:
    flaky = build("flaky", {"timeout_seconds": 0.3, "batch_size": 10, "concurrency": 4})
    records = [{"notes": text} for text in ["a", "RAISE", "bbb", "SLOW", "cc"]]
    started = time.monotonic()
    failures, headers = await EnrichStage([flaky]).run(records)
    assert time.monotonic() - started < 5
    assert [failure is None for failure in failures] == [True, False, True, False, True]
    assert isinstance(failures[1], EnrichFailure) and failures[1].error_class == "ConnectionError"
    assert isinstance(failures[3], EnrichFailure) and failures[3].error_class == "TimeoutError"
    assert [record.get("summary") for record in records] == ["len=1", None, "len=3", None, "len=2"]
    assert json.loads(headers[0]) == [{"p": "flaky", "m": "flaky-1", "usd": 0.001}]


async def test_every_record_failing_on_connections_or_timeouts_is_an_outage_not_dead_letters() -> None:
    flaky = build("flaky", {"timeout_seconds": 0.3, "batch_size": 10, "concurrency": 4})
    for texts in (["RAISE", "RAISE", "RAISE"], ["SLOW", "RAISE"]):
        with pytest.raises(ProviderUnavailable, match=f"provider flaky unavailable: all {len(texts)} records failed"):
            await EnrichStage([flaky]).run([{"notes": text} for text in texts])


async def test_an_outage_the_provider_reports_is_raised_without_retrying_record_by_record() -> None:
    down = build("switchable", {"down_while": __file__})
    with pytest.raises(ProviderUnavailable, match="provider switchable unavailable: connection refused"):
        await EnrichStage([down]).run([{"notes": "a"}, {"notes": "b"}])
