"""Budgets in the enrichment stage, on the session's Kafka: once a step's budget is spent, the next batch pauses the
pipeline, passes without the step (said in `hw-enrich`), or is dead-lettered with reason `budget`, as configured."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest

from headwater.kafka.config import KafkaSettings
from headwater.statuspage.samples import local_samples
from streams.enrich import EnrichStage
from streams.enrich.spending import BudgetPaused
from tests.fixtures.kafka import KafkaService
from tests.test_enrich_calls import notes, scripted


def _stage(kafka: KafkaService, on_exceed: str) -> tuple[EnrichStage, Any]:
    # each record costs $7 (10 input tokens at $0.5, 1 output token at $2): a batch of 3 spends the $20 budget
    provider = scripted(budget={"usd_per_hour": 20.0, "on_exceed": on_exceed})
    settings = KafkaSettings.model_validate({"bootstrap.servers": kafka.bootstrap})
    return EnrichStage([provider], f"budget_{uuid.uuid4().hex[:8]}@1", kafka=settings), provider


async def test_a_spent_budget_set_to_pause_makes_the_batch_wait_without_calling(kafka: KafkaService) -> None:
    stage, provider = _stage(kafka, "pause")
    try:
        failures, _ = await stage.run(notes("a", "b", "c"))
        assert failures == [None] * 3
        # the status page's "cost against budget": what the window spent (once the ledger read it back from the
        # budget topic), beside its limit
        def budget() -> dict[str, float]:
            return {sample.name: sample.value for sample in local_samples()
                    if sample.name.startswith("headwater_enrich_budget_")
                    and sample.labels == {"pipeline": stage.pipeline, "step": "scripted", "window": "hour"}}

        expected = {"headwater_enrich_budget_limit_usd": 20.0, "headwater_enrich_budget_spent_usd": 21.0}
        deadline = time.monotonic() + 30
        while budget() != expected:
            assert time.monotonic() < deadline, budget()
            await asyncio.sleep(0.05)
        with pytest.raises(BudgetPaused, match=r"its budget is spent \(\$20 per hour\) until \d{4}-\d\d-\d\d \d\d:00"):
            await stage.run(notes("d"))
        assert len(provider.calls) == 1
    finally:
        await stage.close()


async def test_a_spent_budget_set_to_skip_passes_records_without_the_step_and_says_so(kafka: KafkaService) -> None:
    stage, provider = _stage(kafka, "skip")
    try:
        await stage.run(notes("a", "b", "c"))
        later = notes("d", "e")
        failures, headers = await stage.run(later)
        assert failures == [None, None] and all("length" not in record for record in later)
        assert json.loads(headers[0]) == [{"p": "scripted", "m": "scripted-1", "skip": "budget"}]
        assert len(provider.calls) == 1
    finally:
        await stage.close()


async def test_a_spent_budget_set_to_dead_letter_fails_the_records_with_reason_budget(kafka: KafkaService) -> None:
    stage, provider = _stage(kafka, "dead_letter")
    try:
        await stage.run(notes("a", "b", "c"))
        failures, _ = await stage.run(notes("d"))
        assert failures[0] is not None and failures[0].error_class == "budget"
        assert failures[0].message.startswith("budget: step scripted spent its $20 per hour until ")
        assert len(provider.calls) == 1
    finally:
        await stage.close()
