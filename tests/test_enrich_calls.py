"""The call discipline every provider gets from the stage: throttles and transient failures retried (Retry-After
honoured) then an outage, concurrency and requests-per-minute bounds, input bounds, prices and `hw-enrich`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import Field

from streams.enrich import EnrichStage
from streams.enrich.base import (
    Enriched,
    EnrichOutcome,
    Provider,
    ProviderConfig,
    ProviderUnavailable,
    Throttled,
    TransientError,
)
from streams.enrich.cache import ResultCache
from streams.enrich.pricing import PriceList


class ScriptedConfig(ProviderConfig):
    failures: list[str] = Field(default_factory=list, description="What the first calls raise: throttle, 500.")
    retry_after: float | None = Field(None, description="Retry-After of a throttle.")
    latency_s: float = Field(0.0, description="How long each call takes.")


class ScriptedProvider(Provider):
    """A remote provider whose first calls fail as scripted, then answer with the text's length, billed in tokens."""

    name = "scripted"
    remote = True
    max_batch: ClassVar[int] = 3
    default_max_chars: ClassVar[int] = 50
    config: ScriptedConfig

    def __init__(self, config: ScriptedConfig) -> None:
        super().__init__(config)
        self.calls: list[list[str]] = []
        self.call_times: list[float] = []
        self.in_flight = 0
        self.most_in_flight = 0

    @property
    def model(self) -> str:
        return "scripted-1"

    def input_fields(self) -> list[str]:
        return ["notes"]

    def output_fields(self) -> list[str]:
        return ["length"]

    def price_list(self) -> PriceList:
        return PriceList({"input_tokens": 0.5, "output_tokens": 2.0}, read_on="2026-12-01", source="test")

    async def enrich(self, batch: Sequence[Mapping[str, Any]]) -> list[EnrichOutcome]:
        self.calls.append([record["notes"] for record in batch])
        self.call_times.append(time.monotonic())
        if len(self.calls) <= len(self.config.failures):
            failure = self.config.failures[len(self.calls) - 1]
            if failure == "throttle":
                raise Throttled("429 Too Many Requests", self.config.retry_after)
            raise TransientError("500 Internal Server Error")
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.config.latency_s)
        finally:
            self.in_flight -= 1
        return [
            Enriched({"length": len(record["notes"])}, {"input_tokens": 10, "output_tokens": 1}) for record in batch
        ]


def scripted(**options: Any) -> ScriptedProvider:
    return ScriptedProvider(ScriptedConfig.model_validate(options))


def notes(*texts: str) -> list[dict[str, Any]]:
    return [{"notes": text} for text in texts]


async def test_a_throttle_is_retried_after_the_time_the_service_asked_for() -> None:
    provider = scripted(failures=["throttle"], retry_after=0.4)
    records = notes("a", "bb")
    failures, _ = await EnrichStage([provider]).run(records)
    assert failures == [None, None] and [record["length"] for record in records] == [1, 2]
    assert len(provider.calls) == 2
    assert provider.call_times[1] - provider.call_times[0] >= 0.4


async def test_failures_past_max_attempts_are_an_outage_not_dead_letters() -> None:
    provider = scripted(failures=["500", "throttle", "500"], retry_after=0.01, max_attempts=3)
    with pytest.raises(ProviderUnavailable, match="provider scripted unavailable: failed 3 tries: 500"):
        await EnrichStage([provider]).run(notes("a"))
    assert len(provider.calls) == 3


async def test_batches_are_cut_at_the_service_limit_and_calls_overlap_up_to_concurrency() -> None:
    provider = scripted(latency_s=0.2, concurrency=2, batch_size=100)
    failures, _ = await EnrichStage([provider]).run(notes(*"abcdefghijk"))
    assert failures == [None] * 11
    assert sorted(len(call) for call in provider.calls) == [2, 3, 3, 3]
    assert provider.most_in_flight == 2


async def test_requests_per_minute_spaces_the_calls() -> None:
    provider = scripted(batch_size=1, concurrency=8, requests_per_minute=120)
    await EnrichStage([provider]).run(notes("a", "b", "c", "d"))
    # 120 a minute is 2 a second: after a burst of two, one call every half second
    assert provider.call_times[-1] - provider.call_times[0] >= 2 * 0.5 * 0.9


async def test_a_text_over_max_chars_is_cut_or_dead_lettered_and_the_record_keeps_its_value() -> None:
    long_text = "x" * 80
    cut = scripted()
    records = notes(long_text)
    failures, _ = await EnrichStage([cut]).run(records)
    assert failures == [None] and cut.calls == [["x" * 50]]
    assert records[0]["notes"] == long_text and records[0]["length"] == 50

    refusing = scripted(on_too_long="dead_letter", max_chars=60)
    failures, _ = await EnrichStage([refusing]).run(notes(long_text, "short"))
    assert failures[0] is not None and failures[0].error_class == "InputTooLong"
    assert "80 characters, over max_chars 60" in failures[0].message and failures[1] is None
    assert refusing.calls == [["short"]]


async def test_billed_tokens_are_priced_from_the_list_or_the_pipeline_override_and_reported_per_record() -> None:
    stage = EnrichStage([scripted()], "orders@1")
    _, headers = await stage.run(notes("a"))
    assert json.loads(headers[0]) == [{"p": "scripted", "m": "scripted-1", "in": 10, "out": 1, "usd": 7.0}]
    overridden = EnrichStage([scripted(prices={"input_tokens": 0.1})])
    _, headers = await overridden.run(notes("a"))
    assert json.loads(headers[0])[0]["usd"] == pytest.approx(3.0)
    assert overridden.cost_usd == {"scripted": pytest.approx(3.0)}


async def test_repeated_inputs_are_answered_from_the_cache_across_a_restart_at_no_cost(tmp_path: Path) -> None:
    path = tmp_path / "orders.sqlite"
    first = scripted()
    stage = EnrichStage([first], "orders@1", cache=ResultCache(path))
    records = notes("a", "bb", "ccc")
    await stage.run(records)
    again = notes("bb", "dddd")
    _, again_headers = await stage.run(again)
    await stage.close()
    assert first.calls == [["a", "bb", "ccc"], ["dddd"]]
    assert [record["length"] for record in again] == [2, 4]
    assert json.loads(again_headers[0]) == [{"p": "scripted", "m": "scripted-1", "c": True}]
    assert "c" not in json.loads(again_headers[1])[0]

    restarted = scripted()
    replay = EnrichStage([restarted], "orders@1", cache=ResultCache(path))
    replayed = notes("a", "bb", "ccc")
    _, replay_headers = await replay.run(replayed)
    await replay.close()
    assert restarted.calls == [] and replayed == records
    assert all(json.loads(header)[0]["c"] for header in replay_headers)

    uncached = scripted(cache=False)
    off = EnrichStage([uncached], "orders@1", cache=ResultCache(path))
    await off.run(notes("a"))
    await off.close()
    assert uncached.calls == [["a"]]


async def test_two_steps_of_one_provider_each_have_their_own_entry_and_total() -> None:
    stage = EnrichStage([scripted(), scripted(prices={"input_tokens": 0.1})])
    _, headers = await stage.run(notes("a"))
    first, second = json.loads(headers[0])
    assert first["usd"] == 7.0 and second["usd"] == pytest.approx(3.0)
    assert stage.cost_usd == {"scripted": 7.0, "scripted#2": pytest.approx(3.0)}


async def test_with_redact_a_third_party_is_sent_placeholders_while_the_record_keeps_its_values() -> None:
    provider = scripted(redact=["email", "phone", "credit_card"], max_chars=500)
    text = "Reach jo.doe+crm@example.co.uk or +44 20 7946 0018; card 4111 1111 1111 1111."
    records = notes(text)
    failures, _ = await EnrichStage([provider]).run(records)
    (sent,) = provider.calls[0]
    assert failures == [None] and sent == "Reach <EMAIL> or <PHONE>; card <CREDIT_CARD>."
    for secret in ("jo.doe", "7946", "4111"):
        assert secret not in sent
    assert records[0]["notes"] == text
