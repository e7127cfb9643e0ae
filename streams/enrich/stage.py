"""Runs a pipeline's providers over a micro-batch, one provider after another, each over the records still alive:
inputs shaped (bounded, redacted), chunks of the provider's batch limit called concurrently under its call discipline
(`calls.py`), outcomes priced and counted, `hw-enrich` written per record.

A call that raises or misses its deadline is retried record by record, so one bad record fails alone and its
neighbours are enriched. A provider outage is not a record's fault: `ProviderUnavailable` (raised by a provider, or by
the call discipline once its retries run out), or every record of a step (two or more) failing alone with a timeout or
a connection error, raises `ProviderUnavailable` out of the stage, so the runtime retries the batch instead of
dead-lettering it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from headwater.envelope import enrich_header
from headwater.kafka.config import KafkaSettings
from streams.enrich import metrics
from streams.enrich.base import (
    Enriched,
    EnrichFailure,
    EnrichOutcome,
    Provider,
    ProviderStartError,
    ProviderUnavailable,
)
from streams.enrich.budget_book import Refused
from streams.enrich.cache import CachedResult, ResultCache, cache_keys
from streams.enrich.calls import ProviderCalls
from streams.enrich.inputs import InputShaper
from streams.enrich.pricing import PriceList
from streams.enrich.spending import StepBudget, refusal_reason

log = logging.getLogger(__name__)
Record = dict[str, Any]
TOKEN_DIRECTIONS = {"input_tokens": "input", "output_tokens": "output"}
HEADER_TOKENS = {"input_tokens": "in", "output_tokens": "out"}


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


@dataclass(frozen=True)
class Used:
    """What one provider did for one record, for `hw-enrich` and the metrics."""

    cost_usd: float = 0.0
    billed: Mapping[str, float] | None = None
    cache_hit: bool = False
    skipped: str | None = None


@dataclass(frozen=True)
class StepResult:
    """One outcome per record, and the positions answered from the cache or skipped for the budget."""

    outcomes: list[EnrichOutcome]
    hits: set[int]
    skipped: set[int]


class Step:
    """One provider of the pipeline with its call discipline, input shaping, cache and prices."""

    def __init__(
        self,
        provider: Provider,
        pipeline: str,
        cache: ResultCache | None,
        budget: StepBudget | None = None,
    ) -> None:
        self.provider = provider
        self.pipeline = pipeline
        self.budget = budget
        self.cache = cache if provider.uses_cache() else None
        self._options = provider.config.model_dump()
        self._hits = metrics.CACHE_HITS.labels(pipeline, provider.name)
        self.calls = ProviderCalls(provider, pipeline)
        self.shaper = InputShaper(provider)
        self.prices: PriceList = provider.price_list().overridden(provider.config.prices)
        model = provider.model
        self._down = metrics.PROVIDER_DOWN.labels(pipeline, provider.name)
        self._cost = metrics.COST.labels(pipeline, provider.name, model)
        self._tokens = {
            quantity: metrics.TOKENS.labels(pipeline, provider.name, model, direction)
            for quantity, direction in TOKEN_DIRECTIONS.items()
        }

    async def _run_chunk(self, chunk: list[Mapping[str, Any]]) -> list[EnrichOutcome]:
        try:
            return await self.calls.call(chunk)
        except ProviderUnavailable:
            raise
        except Exception as exc:
            if len(chunk) == 1:
                return [_failure(self.provider, exc)]
            log.warning(
                "event=enrich_call_failed pipeline=%s provider=%s records=%d error=%s retry=per_record",
                self.pipeline, self.provider.name, len(chunk), type(exc).__name__,
            )
            singles = await _gathered([self._run_chunk([record]) for record in chunk])
            return [outcomes[0] for outcomes in singles]

    async def run(self, records: Sequence[Mapping[str, Any]]) -> StepResult:
        """Raises `ProviderUnavailable` for an outage (and `BudgetPaused` for a spent budget set to pause)."""
        outcomes: list[EnrichOutcome | None] = [None] * len(records)
        sent: list[Mapping[str, Any]] = []
        positions: list[int] = []
        if self.shaper.redactor is not None:  # tens of microseconds a text: off the event loop
            shaped_records = await asyncio.to_thread(lambda: [self.shaper.shape(record) for record in records])
        else:
            shaped_records = [self.shaper.shape(record) for record in records]
        for index, shaped in enumerate(shaped_records):
            if isinstance(shaped, EnrichFailure):
                outcomes[index] = shaped
            else:
                sent.append(shaped)
                positions.append(index)
        hits: set[int] = set()
        keys: list[bytes] = []
        if self.cache is not None and sent:
            provider = self.provider
            keys = cache_keys(provider.name, provider.model, self._options, [self.shaper.inputs(r) for r in sent])
            found = await self.cache.get_many(keys)
            for position, key in zip(positions, keys, strict=True):
                answer = found.get(key)
                if answer is not None:
                    outcomes[position] = Enriched(dict(answer.fields))
                    hits.add(position)
            if hits:
                self._hits.inc(len(hits))
                missed = [at for at, position in enumerate(positions) if position not in hits]
                sent = [sent[at] for at in missed]
                positions = [positions[at] for at in missed]
                keys = [keys[at] for at in missed]
        skipped: set[int] = set()
        if self.budget is not None and sent:
            refused = await self.budget.spend(len(sent), lambda: self._call_priced(sent, positions, outcomes))
            if refused is not None:
                self._refuse(refused, positions, outcomes, skipped)
        else:
            await self._call(sent, positions, outcomes)
        if self.cache is not None and keys:
            fresh = {
                key: CachedResult(outcome.fields, outcome.billed)
                for key, position in zip(keys, positions, strict=True)
                if isinstance(outcome := outcomes[position], Enriched)
            }
            if fresh:
                await self.cache.put_many(fresh)
        return StepResult(cast(list[EnrichOutcome], outcomes), hits, skipped)

    def _refuse(
        self, refused: Refused, positions: list[int], outcomes: list[EnrichOutcome | None], skipped: set[int]
    ) -> None:
        """The budget refused the batch: the records pass without this step, or are dead-lettered for it."""
        assert self.budget is not None
        if self.budget.config.on_exceed == "skip":
            for position in positions:
                outcomes[position] = Enriched({})
                skipped.add(position)
            return
        reason = refusal_reason(self.budget.step, refused, self.budget.limit(refused))
        for position in positions:
            outcomes[position] = EnrichFailure("budget", reason)

    async def _call_priced(
        self, sent: list[Mapping[str, Any]], positions: list[int], outcomes: list[EnrichOutcome | None]
    ) -> float:
        await self._call(sent, positions, outcomes)
        return sum(
            self.prices.cost(outcome.billed)
            for position in positions
            if isinstance(outcome := outcomes[position], Enriched) and outcome.billed
        )

    async def _call(
        self, sent: list[Mapping[str, Any]], positions: list[int], outcomes: list[EnrichOutcome | None]
    ) -> None:
        if not sent:
            return
        size = self.provider.batch_limit()
        starts = range(0, len(sent), size)
        try:
            results = await _gathered([self._run_chunk(sent[start : start + size]) for start in starts])
            called = [outcome for chunk in results for outcome in chunk]
            _raise_outage(self.provider, called)
        except ProviderUnavailable:
            self._down.set(1)
            raise
        self._down.set(0)
        for index, outcome in zip(positions, called, strict=True):
            outcomes[index] = outcome

    def account(self, outcome: Enriched) -> Used:
        """Price what the record was billed by and count it."""
        if not outcome.billed:
            return Used()
        cost = self.prices.cost(outcome.billed)
        if cost:
            self._cost.inc(cost)
        for quantity, counter in self._tokens.items():
            amount = outcome.billed.get(quantity)
            if amount:
                counter.inc(amount)
        return Used(cost, outcome.billed)


def _step_keys(providers: Sequence[Provider]) -> list[str]:
    """Each step's name in `hw-enrich` and the cost totals: its provider's name, numbered from the second step of a
    provider used twice (`aws_comprehend`, `aws_comprehend#2`)."""
    seen: dict[str, int] = {}
    keys = []
    for provider in providers:
        seen[provider.name] = seen.get(provider.name, 0) + 1
        keys.append(provider.name if seen[provider.name] == 1 else f"{provider.name}#{seen[provider.name]}")
    return keys


class EnrichStage:
    def __init__(
        self,
        providers: Sequence[Provider],
        pipeline: str = "",
        cache: ResultCache | None = None,
        kafka: KafkaSettings | None = None,
    ) -> None:
        self.providers = list(providers)
        self.pipeline = pipeline
        self.cache = cache
        self.keys = _step_keys(self.providers)
        self._models = [provider.model for provider in self.providers]  # a provider may look its version up
        self.budgets = [
            StepBudget(kafka, pipeline, key, provider.config.budget)
            if kafka is not None and provider.config.budget is not None else None
            for provider, key in zip(self.providers, self.keys, strict=True)
        ]
        if kafka is None and any(provider.config.budget for provider in self.providers):
            log.warning("event=budget_not_enforced pipeline=%s reason=no_kafka", pipeline)
        self.steps = [
            Step(provider, pipeline, cache, budget)
            for provider, budget in zip(self.providers, self.budgets, strict=True)
        ]
        self.cost_usd: dict[str, float] = dict.fromkeys(self.keys, 0.0)
        self._free_header = self._header({})
        self._started = False

    async def start(self) -> None:
        """Start every provider (checks credentials, endpoints, models), once; `ProviderStartError` names the first
        that cannot, and the ones started are closed."""
        if self._started:
            return
        budgets = [budget for budget in self.budgets if budget is not None]
        for index, budget in enumerate(budgets):
            try:
                await budget.start()
            except BaseException:
                for started_budget in budgets[:index]:
                    await started_budget.close()
                raise
        started: list[Provider] = []
        try:
            for provider in self.providers:
                try:
                    await provider.start()
                except BaseException as exc:
                    await provider.close()  # what it opened before failing (a client, a model worker)
                    if isinstance(exc, ProviderStartError):
                        raise ProviderStartError(
                            f"pipeline {self.pipeline}: provider {provider.name}: {exc}"
                        ) from None
                    raise
                started.append(provider)
        except BaseException:
            for provider in started:
                await provider.close()
            for budget in budgets:
                await budget.close()
            raise
        self._started = True

    async def close(self) -> None:
        if self._started:
            self._started = False
            for provider in self.providers:
                await provider.close()
            for budget in self.budgets:
                if budget is not None:
                    await budget.close()
        if self.cache is not None:
            await self.cache.close()

    async def run(self, records: list[Record]) -> tuple[list[EnrichFailure | None], list[bytes]]:
        """Enrich records in place; per record, the failure (or None) and the `hw-enrich` header value.

        Raises `ProviderUnavailable` when a provider is down (see the module's docstring)."""
        await self.start()
        failures: list[EnrichFailure | None] = [None] * len(records)
        used: list[dict[str, Used]] = [{} for _ in records]
        for step, name in zip(self.steps, self.keys, strict=True):
            live = [index for index, failure in enumerate(failures) if failure is None]
            result = await step.run([records[index] for index in live])
            for position, (index, outcome) in enumerate(zip(live, result.outcomes, strict=True)):
                if isinstance(outcome, EnrichFailure):
                    failures[index] = outcome
                    continue
                records[index].update(outcome.fields)
                if position in result.hits:
                    used[index][name] = Used(cache_hit=True)
                    continue
                if position in result.skipped:
                    used[index][name] = Used(skipped="budget")
                    continue
                spent = step.account(outcome)
                if spent.billed:
                    used[index][name] = spent
                    self.cost_usd[name] += spent.cost_usd
        return failures, [self._header(spent) if spent else self._free_header for spent in used]

    def _header(self, used: Mapping[str, Used]) -> bytes:
        """One entry per step, in order (ARCHITECTURE.md): provider, model, and what applies of tokens in and out,
        USD, a cache hit, a budget skip."""
        entries: list[dict[str, Any]] = []
        for provider, model, name in zip(self.providers, self._models, self.keys, strict=True):
            spent = used.get(name, Used())
            entry: dict[str, Any] = {"p": provider.name, "m": model}
            if spent.billed:
                for quantity, short in HEADER_TOKENS.items():
                    if quantity in spent.billed:
                        entry[short] = spent.billed[quantity]
                entry["usd"] = round(spent.cost_usd, 8)
            if spent.cache_hit:
                entry["c"] = True
            if spent.skipped:
                entry["skip"] = spent.skipped
            entries.append(entry)
        return enrich_header(entries)
