"""Budgets shared through the `_headwater.budgets` topic of the real broker: every worker reaches the same decisions,
settlements release what a call did not cost, restarts and vanished workers keep the spend right."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from headwater.kafka.config import KafkaSettings
from streams.enrich.budget import BudgetConfig, BudgetLedger, Grant, Refused
from streams.enrich.budget_book import BudgetBook, to_micros
from tests.fixtures.kafka import KafkaService

REPO = Path(__file__).resolve().parents[1]


def _pipeline() -> str:
    return f"crm-contacts-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def _ledger(
    kafka: KafkaService, pipeline: str, config: BudgetConfig, worker: str = "worker-a", checkpoint_every: int = 10_000
) -> AsyncIterator[BudgetLedger]:
    ledger = BudgetLedger(KafkaSettings.model_validate({"bootstrap.servers": kafka.bootstrap}), pipeline, "llm",
                          config, worker, checkpoint_every=checkpoint_every)
    await ledger.start()
    try:
        yield ledger
    finally:
        await ledger.close()


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _granted_per_hour(grants: list[Grant]) -> dict[datetime, float]:
    per_hour: defaultdict[datetime, float] = defaultdict(float)
    for grant in grants:
        per_hour[_hour(grant.reserved_at)] += grant.estimate_usd
    return per_hour


async def _spend_until_refused(ledger: BudgetLedger, batch_usd: float) -> list[Grant]:
    grants: list[Grant] = []
    while isinstance(decision := await ledger.reserve(batch_usd), Grant):
        grants.append(decision)
        await ledger.settle(decision, batch_usd)
    return grants


def test_a_budget_needs_a_limit() -> None:
    with pytest.raises(ValidationError, match="usd_per_hour, usd_per_day or both"):
        BudgetConfig(on_exceed="skip")
    assert BudgetConfig(usd_per_day=5).on_exceed == "pause"


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def test_the_hour_resets_on_the_clock_hour_while_the_day_keeps_counting() -> None:
    book, limits = BudgetBook(timedelta(minutes=10)), {"hour": to_micros(1.00), "day": to_micros(1.50)}
    assert isinstance(book.reserve("r1", to_micros(1.00), _ms("2026-12-01T10:59:59.900+00:00"), limits), Grant)
    refused = book.reserve("r2", to_micros(0.30), _ms("2026-12-01T10:59:59.950+00:00"), limits)
    assert isinstance(refused, Refused) and refused.window == "hour"
    assert refused.resets_at == datetime(2026, 12, 1, 11, tzinfo=UTC)
    assert isinstance(book.reserve("r3", to_micros(0.60), _ms("2026-12-01T11:00:00.000+00:00"), limits), Grant)
    # The day (1.00 + 0.60 reserved) is used up now; its refusal outlasts any hour's.
    refused = book.reserve("r4", to_micros(0.10), _ms("2026-12-01T11:00:01.000+00:00"), limits)
    assert isinstance(refused, Refused) and refused.window == "day"
    assert refused.resets_at == datetime(2026, 12, 2, tzinfo=UTC)


def test_a_settlement_is_charged_to_the_windows_of_its_reservation() -> None:
    book, limits = BudgetBook(timedelta(minutes=10)), {"hour": to_micros(1.00)}
    book.reserve("r1", to_micros(0.80), _ms("2026-12-01T10:59:59+00:00"), limits)
    book.settle("r1", to_micros(0.50), _ms("2026-12-01T11:00:02+00:00"))
    assert book.spent("hour", _ms("2026-12-01T10:30:00+00:00")) == to_micros(0.50)
    assert book.spent("hour", _ms("2026-12-01T11:00:03+00:00")) == 0
    assert book.spent("day", _ms("2026-12-01T11:00:03+00:00")) == to_micros(0.50)


def test_a_late_timestamp_cannot_reopen_a_day_that_is_over() -> None:
    book, limits = BudgetBook(timedelta(minutes=10)), {"day": to_micros(1.00)}
    book.reserve("r1", to_micros(2.00), _ms("2026-12-01T23:59:00+00:00"), limits)
    book.reserve("r2", to_micros(0.10), _ms("2026-12-02T00:00:01+00:00"), limits)
    # Stamped before midnight but read after it: counted at the book's time, in the new day.
    decision = book.reserve("r3", to_micros(0.10), _ms("2026-12-01T23:59:30+00:00"), limits)
    assert isinstance(decision, Grant) and decision.reserved_at == datetime(2026, 12, 2, 0, 0, 1, tzinfo=UTC)
    assert book.reserved("day", _ms("2026-12-02T00:00:02+00:00")) == to_micros(0.20)


async def test_two_workers_racing_overspend_by_at_most_one_batch_and_agree_on_the_spend(kafka: KafkaService) -> None:
    pipeline, config = _pipeline(), BudgetConfig(usd_per_hour=1.00)
    async with _ledger(kafka, pipeline, config, "worker-a") as a, _ledger(kafka, pipeline, config, "worker-b") as b:
        # Two loops per worker: calls of one worker overlap too.
        runs = await asyncio.gather(*(_spend_until_refused(ledger, 0.30) for ledger in (a, b, a, b)))
        grants = [grant for run in runs for grant in run]
        per_hour = _granted_per_hour(grants)
        assert all(total <= 1.00 + 0.30 + 1e-9 for total in per_hour.values()), per_hour
        assert max(per_hour.values()) >= 1.00 - 1e-9, "refused before the budget was used up"
        assert all(run for run in runs[:2]), "both workers were granted calls"
        await a.catch_up()
        await b.catch_up()
        assert a.spent("day") == b.spent("day") == pytest.approx(sum(grant.estimate_usd for grant in grants))
        assert a.reserved("day") == b.reserved("day") == 0


async def test_workers_with_a_budget_change_half_rolled_out_agree_on_every_reservation(kafka: KafkaService) -> None:
    pipeline = _pipeline()
    async with _ledger(kafka, pipeline, BudgetConfig(usd_per_day=1.00), "old") as old, \
            _ledger(kafka, pipeline, BudgetConfig(usd_per_day=2.00), "new") as new:
        assert isinstance(await old.reserve(1.20), Grant)
        assert isinstance(await new.reserve(0.50), Grant)  # within the new worker's 2.00
        assert isinstance(await old.reserve(0.10), Refused)  # past the old worker's 1.00
        await old.catch_up()
        await new.catch_up()
        assert old.reserved("day") == new.reserved("day") == pytest.approx(1.70)


async def test_settling_for_less_than_the_estimate_releases_the_rest(kafka: KafkaService) -> None:
    async with _ledger(kafka, _pipeline(), BudgetConfig(usd_per_day=1.00)) as ledger:
        first, second = await ledger.reserve(0.60), await ledger.reserve(0.60)
        assert isinstance(first, Grant) and isinstance(second, Grant)  # the second one crosses the limit
        assert isinstance(await ledger.reserve(0.60), Refused)
        await ledger.settle(first, 0.10)
        await ledger.settle(second, 0.10)
        assert isinstance(await ledger.reserve(0.60), Grant)
        assert ledger.spent("day") == pytest.approx(0.20)
        assert ledger.reserved("day") == pytest.approx(0.60)


async def test_a_restarted_worker_sees_the_spend_so_far(kafka: KafkaService) -> None:
    pipeline, config = _pipeline(), BudgetConfig(usd_per_day=1.00)
    async with _ledger(kafka, pipeline, config) as before:
        for estimate, actual in ((0.30, 0.25), (0.30, 0.30)):
            grant = await before.reserve(estimate)
            assert isinstance(grant, Grant)
            await before.settle(grant, actual)
        assert isinstance(await before.reserve(0.20), Grant)  # still running when the worker stops
    async with _ledger(kafka, pipeline, config) as after, _ledger(kafka, _pipeline(), config) as other_pipeline:
        assert after.spent("day") == pytest.approx(0.55)
        assert after.reserved("day") == pytest.approx(0.20)
        assert other_pipeline.spent("day") == other_pipeline.reserved("day") == 0
        assert isinstance(await after.reserve(0.40), Grant)
        assert isinstance(await after.reserve(0.01), Refused)


async def test_a_restarted_worker_starts_from_the_latest_checkpoint_and_decides_the_same(kafka: KafkaService) -> None:
    pipeline, config = _pipeline(), BudgetConfig(usd_per_day=1.00)
    async def calls(ledger: BudgetLedger, count: int) -> None:
        for _ in range(count):
            grant = await ledger.reserve(0.10)
            assert isinstance(grant, Grant)
            await ledger.settle(grant, 0.05)

    async with _ledger(kafka, pipeline, config, checkpoint_every=4) as before:
        await calls(before, 3)
        still_running = await before.reserve(0.20)
        assert isinstance(still_running, Grant)
        # Eight more records of the step: a checkpoint is written after the open reservation's record.
        await calls(before, 4)
        await before.catch_up()
        first_read = before.replayed_from
    async with _ledger(kafka, pipeline, config) as after:
        assert after.replayed_from > first_read  # not the whole day: after a checkpoint
        assert after.spent("day") == pytest.approx(0.35)
        assert after.reserved("day") == pytest.approx(0.20)
        await after.settle(still_running, 0.10)  # the reservation restored from the checkpoint settles like any
        await after.catch_up()
        assert after.spent("day") == pytest.approx(0.45)
        assert after.reserved("day") == 0


@pytest.mark.parametrize("window", ["hour", "day"])
async def test_a_refusal_says_when_its_window_resets(kafka: KafkaService, window: str) -> None:
    config = BudgetConfig(usd_per_hour=0.50) if window == "hour" else BudgetConfig(usd_per_hour=10, usd_per_day=0.50)
    async with _ledger(kafka, _pipeline(), config) as ledger:
        assert isinstance(await ledger.reserve(0.60), Grant)
        refused = await ledger.reserve(0.10)
        assert isinstance(refused, Refused)
        assert refused.window == window
        assert abs(refused.reserved_at - datetime.now(UTC)) < timedelta(seconds=30)
        start = _hour(refused.reserved_at) if window == "hour" else _hour(refused.reserved_at).replace(hour=0)
        assert refused.resets_at == start + (timedelta(hours=1) if window == "hour" else timedelta(days=1))


async def test_the_reservation_of_a_vanished_worker_expires_charged_at_its_estimate(kafka: KafkaService) -> None:
    pipeline, config = _pipeline(), BudgetConfig(usd_per_day=1.00, reservation_timeout_seconds=1.0)
    async with _ledger(kafka, pipeline, config, "worker-a") as vanishing:
        lost = await vanishing.reserve(0.40)
        assert isinstance(lost, Grant)
    async with _ledger(kafka, pipeline, config, "worker-b") as survivor:
        assert survivor.reserved("day") == pytest.approx(0.40)
        # What is awaited is the clock itself: the reservation's timeout passing (the broker stamps on this host).
        overdue_at = lost.reserved_at + timedelta(seconds=config.reservation_timeout_seconds, milliseconds=20)
        await asyncio.sleep(max(0.0, (overdue_at - datetime.now(UTC)).total_seconds()))
        assert survivor.reserved("day") == 0
        assert survivor.spent("day") == pytest.approx(0.40)  # the call may have been billed: charged, not freed
        # A settlement that arrives after the timeout still replaces the charged estimate by the actual cost.
        await survivor.settle(lost, 0.05)
        await survivor.catch_up()
        assert survivor.spent("day") == pytest.approx(0.05)


_WORKER = """
import asyncio, json, sys
from headwater.kafka.config import KafkaSettings
from streams.enrich.budget import BudgetConfig, BudgetLedger, Grant

async def main() -> None:
    bootstrap, pipeline, worker = sys.argv[1:4]
    kafka = KafkaSettings.model_validate({"bootstrap.servers": bootstrap})
    ledger = BudgetLedger(kafka, pipeline, "llm", BudgetConfig(usd_per_hour=3.00), worker)
    await ledger.start()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    granted = []
    while isinstance(decision := await ledger.reserve(0.10), Grant):
        granted.append([decision.reserved_at.isoformat(), decision.estimate_usd])
        await ledger.settle(decision, 0.10)
    await ledger.close()
    print(json.dumps(granted), flush=True)

asyncio.run(main())
"""


async def test_two_worker_processes_racing_overspend_by_at_most_one_batch(kafka: KafkaService) -> None:
    pipeline = _pipeline()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    async with AsyncExitStack() as stack:
        workers = []
        for name in ("worker-a", "worker-b"):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _WORKER, kafka.bootstrap, pipeline, name, env=env,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )
            stack.push_async_callback(process.wait)
            stack.callback(lambda process=process: process.returncode is None and process.kill())
            workers.append(process)
        for process in workers:  # both ledgers have read the topic before either reserves
            assert process.stdout is not None
            assert await asyncio.wait_for(process.stdout.readline(), 60) == b"ready\n"
        for process in workers:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            await process.stdin.drain()
        results = await asyncio.wait_for(asyncio.gather(*(process.communicate() for process in workers)), 60)
    assert [process.returncode for process in workers] == [0, 0]
    granted = [json.loads(stdout) for stdout, _ in results]
    assert all(granted), "both processes were granted calls"
    per_hour: defaultdict[datetime, float] = defaultdict(float)
    for at, usd in (grant for process_grants in granted for grant in process_grants):
        per_hour[_hour(datetime.fromisoformat(at))] += usd
    assert all(total <= 3.00 + 0.10 + 1e-9 for total in per_hour.values()), per_hour
    assert max(per_hour.values()) >= 3.00 - 1e-9
    async with _ledger(kafka, pipeline, BudgetConfig(usd_per_hour=3.00), "auditor") as auditor:
        assert auditor.spent("day") == pytest.approx(sum(per_hour.values()))
