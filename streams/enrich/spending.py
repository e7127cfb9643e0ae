"""A step's budget in the enrichment stage: reserve what a batch's calls may cost before making them, settle what
they cost after, and when the budget is spent pause the pipeline, skip the step, or dead-letter the records.

The estimate is the most a record of this step has cost so far, times the batch's records (nothing before the first
batch), so only the batch that crosses the limit gets past it: the workers of a pipeline overspend by at most one
batch together (the ledger orders every worker's reservations on one Kafka partition).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable

from headwater.kafka.config import KafkaSettings
from streams.enrich import metrics
from streams.enrich.base import ProviderUnavailable
from streams.enrich.budget import BudgetLedger
from streams.enrich.budget_book import Refused
from streams.enrich.budget_config import BudgetConfig

log = logging.getLogger(__name__)
WORKER_ID = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class BudgetPaused(ProviderUnavailable):
    """The step's budget is spent and `on_exceed` is pause: the batch waits (retried by the runtime) until the window
    resets; nothing is dead-lettered or committed meanwhile."""

    def __init__(self, step: str, refused: Refused, limit: float) -> None:
        super().__init__(
            step, f"its budget is spent (${limit:g} per {refused.window}) until {refused.resets_at:%Y-%m-%d %H:%M} UTC"
        )


def refusal_reason(step: str, refused: Refused, limit: float) -> str:
    return f"budget: step {step} spent its ${limit:g} per {refused.window} until {refused.resets_at:%H:%M} UTC"


class StepBudget:
    def __init__(self, kafka: KafkaSettings, pipeline: str, step: str, config: BudgetConfig) -> None:
        self.step = step
        self.config = config
        self.ledger = BudgetLedger(kafka, pipeline, step, config, WORKER_ID)
        self.per_record_usd = 0.0
        for window, limit in config.limits().items():
            metrics.BUDGET_LIMIT.labels(pipeline, step, window).set(limit)
            # read at scrape time: the ledger learns what other workers spent while it follows the budget topic
            metrics.BUDGET_SPENT.labels(pipeline, step, window).set_function(
                functools.partial(self.ledger.spent, window)
            )

    async def start(self) -> None:
        await self.ledger.start()

    async def close(self) -> None:
        await self.ledger.close()

    def limit(self, refused: Refused) -> float:
        return self.config.limits()[refused.window]

    async def spend(self, records: int, calls: Callable[[], Awaitable[float]]) -> Refused | None:
        """Make `calls` (which answer what they cost) if the budget grants this batch; the refusal otherwise, unless
        `on_exceed` is pause, which raises `BudgetPaused`."""
        decision = await self.ledger.reserve(self.per_record_usd * records)
        if isinstance(decision, Refused):
            if self.config.on_exceed == "pause":
                raise BudgetPaused(self.step, decision, self.limit(decision))
            return decision
        actual = 0.0
        try:
            actual = await calls()
        finally:
            # A batch that failed as a whole (an outage) was not billed; what it did cost is settled otherwise.
            await self.ledger.settle(decision, actual)
        if records:
            self.per_record_usd = max(self.per_record_usd, actual / records)
        return None
