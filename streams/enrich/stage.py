"""Runs a pipeline's providers over a micro-batch: chunks, concurrency limit, per-call deadline, per-record errors.

A call that raises or misses its deadline is retried record by record, so one bad record fails alone and its
neighbours are enriched. A provider outage is not a record's fault: `ProviderUnavailable` raised by a provider, or
every record of a step (two or more) failing alone with a timeout or a connection error, raises `ProviderUnavailable`
out of the stage, so the runtime retries the batch instead of dead-lettering it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, cast

from headwater.envelope import enrich_header
from streams.enrich.base import Enriched, EnrichFailure, EnrichOutcome, Provider, ProviderUnavailable

log = logging.getLogger(__name__)
Record = dict[str, Any]


def _failure(provider: Provider, exc: BaseException) -> EnrichFailure:
    if isinstance(exc, TimeoutError):
        return EnrichFailure(
            "TimeoutError", f"provider {provider.name} did not answer within {provider.config.timeout_seconds}s",
            unreachable=True,
        )
    return EnrichFailure(
        type(exc).__name__, f"provider {provider.name} failed: {exc}", unreachable=isinstance(exc, ConnectionError)
    )


def _raise_outage(provider: Provider, outcomes: Sequence[EnrichOutcome]) -> None:
    failures = [outcome for outcome in outcomes if isinstance(outcome, EnrichFailure)]
    if len(outcomes) > 1 and len(failures) == len(outcomes) and all(failure.unreachable for failure in failures):
        raise ProviderUnavailable(provider.name, f"all {len(outcomes)} records failed, last: {failures[-1].message}")


async def _gathered(calls: Sequence[Awaitable[list[EnrichOutcome]]]) -> list[list[EnrichOutcome]]:
    """Every call's outcomes; an outage raised by one is raised once all calls ended (none left running)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return cast(list[list[EnrichOutcome]], results)


class EnrichStage:
    def __init__(self, providers: Sequence[Provider]) -> None:
        self.providers = list(providers)
        self._limits = {id(provider): asyncio.Semaphore(provider.config.concurrency) for provider in providers}
        self.cost_usd: dict[str, float] = {provider.name: 0.0 for provider in providers}
        self._free_header = enrich_header(
            {provider.name: {"model": provider.model, "cost_usd": 0.0} for provider in providers}
        )

    async def _call(self, provider: Provider, chunk: list[Record]) -> list[EnrichOutcome]:
        async with self._limits[id(provider)]:
            outcomes = await asyncio.wait_for(provider.enrich(chunk), provider.config.timeout_seconds)
        if len(outcomes) != len(chunk):
            raise ValueError(f"returned {len(outcomes)} outcomes for {len(chunk)} records")
        return outcomes

    async def _run_chunk(self, provider: Provider, chunk: list[Record]) -> list[EnrichOutcome]:
        try:
            return await self._call(provider, chunk)
        except ProviderUnavailable:
            raise
        except Exception as exc:
            if len(chunk) == 1:
                return [_failure(provider, exc)]
            log.warning(
                "event=enrich_call_failed provider=%s records=%d error=%s retry=per_record",
                provider.name, len(chunk), type(exc).__name__,
            )
            singles = await _gathered([self._run_chunk(provider, [record]) for record in chunk])
            return [outcomes[0] for outcomes in singles]

    async def run(self, records: list[Record]) -> tuple[list[EnrichFailure | None], list[bytes]]:
        """Enrich records in place; per record, the failure (or None) and the `hw-enrich` header value.

        Raises `ProviderUnavailable` when a provider is down (see the module's docstring)."""
        failures: list[EnrichFailure | None] = [None] * len(records)
        costs: list[dict[str, float]] = [{} for _ in records]
        for provider in self.providers:
            live = [index for index, failure in enumerate(failures) if failure is None]
            size = provider.config.batch_size
            chunks = [live[start : start + size] for start in range(0, len(live), size)]
            results = await _gathered(
                [self._run_chunk(provider, [records[index] for index in chunk]) for chunk in chunks]
            )
            _raise_outage(provider, [outcome for outcomes in results for outcome in outcomes])
            for chunk, outcomes in zip(chunks, results, strict=True):
                for index, outcome in zip(chunk, outcomes, strict=True):
                    if isinstance(outcome, Enriched):
                        records[index].update(outcome.fields)
                        cost = provider.price_list().overridden(provider.config.prices).cost(outcome.billed)
                        if cost:
                            costs[index][provider.name] = cost
                            self.cost_usd[provider.name] += cost
                    else:
                        failures[index] = outcome
        return failures, [self._header(cost) for cost in costs]

    def _header(self, cost: dict[str, float]) -> bytes:
        if not cost:
            return self._free_header
        return enrich_header(
            {provider.name: {"model": provider.model, "cost_usd": cost.get(provider.name, 0.0)}
             for provider in self.providers}
        )
