"""One provider call with everything around it: at most `concurrency` in flight, requests and tokens per minute,
a deadline, and bounded retries of throttles and transient failures (Retry-After honoured, else exponential backoff
with jitter). A call that still fails after `max_attempts` is an outage (`ProviderUnavailable`), never a dead letter.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any

from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from streams.enrich import metrics
from streams.enrich.base import EnrichOutcome, Provider, ProviderUnavailable, Throttled, TransientError

log = logging.getLogger(__name__)

BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0


def _backoff(state: RetryCallState) -> float:
    """Retry-After when the service gave one (plus a little jitter so workers do not return together), else full
    jitter exponential backoff."""
    failure = state.outcome.exception() if state.outcome is not None else None
    if isinstance(failure, Throttled) and failure.retry_after is not None:
        return min(failure.retry_after, BACKOFF_MAX_SECONDS) * random.uniform(1.0, 1.2)
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (state.attempt_number - 1))
    return random.uniform(0, ceiling)


def _per_minute(rate: float) -> AsyncLimiter:
    """A limiter of `rate` per minute that bursts at most one second's worth (services enforce their per-minute
    limits over shorter spans, so a minute's quota sent at once is refused)."""
    burst = max(1.0, rate / 60)
    return AsyncLimiter(burst, burst * 60 / rate)


class ProviderCalls:
    """The call discipline of one provider instance within one pipeline."""

    def __init__(self, provider: Provider, pipeline: str) -> None:
        config = provider.config
        self.provider = provider
        self.pipeline = pipeline
        self._in_flight = asyncio.Semaphore(config.concurrency)
        self._requests = _per_minute(config.requests_per_minute) if config.requests_per_minute else None
        self._tokens = _per_minute(config.tokens_per_minute) if config.tokens_per_minute else None
        self._calls = metrics.CALLS

    async def _admit(self, batch: Sequence[Mapping[str, Any]]) -> None:
        if self._requests is not None:
            await self._requests.acquire()
        if self._tokens is not None:
            tokens = min(float(self.provider.estimate_tokens(batch)), self._tokens.max_rate)
            await self._tokens.acquire(tokens)

    async def _once(self, batch: Sequence[Mapping[str, Any]]) -> list[EnrichOutcome]:
        await self._admit(batch)
        async with self._in_flight, asyncio.timeout(self.provider.config.timeout_seconds):
            return await self.provider.enrich(batch)

    async def call(self, batch: Sequence[Mapping[str, Any]]) -> list[EnrichOutcome]:
        """The provider's outcomes for `batch`, retrying what may pass. Raises `ProviderUnavailable` once attempts
        run out, `TimeoutError` when the call missed its deadline (the stage then tries the records one by one),
        and whatever else the provider raised."""
        name, attempts = self.provider.name, self.provider.config.max_attempts
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((Throttled, TransientError)),
            stop=stop_after_attempt(attempts),
            wait=_backoff,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    outcomes = await self._once(batch)
        except Throttled as exc:
            self._calls.labels(self.pipeline, name, "throttled").inc()
            raise ProviderUnavailable(name, f"still throttled after {attempts} tries: {exc}") from exc
        except TransientError as exc:
            self._calls.labels(self.pipeline, name, "error").inc()
            raise ProviderUnavailable(name, f"failed {attempts} tries: {exc}") from exc
        except TimeoutError:
            self._calls.labels(self.pipeline, name, "timeout").inc()
            raise
        except ProviderUnavailable:
            self._calls.labels(self.pipeline, name, "unavailable").inc()
            raise
        if len(outcomes) != len(batch):
            raise ValueError(f"provider {name} returned {len(outcomes)} outcomes for {len(batch)} records")
        self._calls.labels(self.pipeline, name, "ok").inc()
        return outcomes

    def _log_retry(self, state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome is not None else None
        outcome = "throttled" if isinstance(failure, Throttled) else "error"
        self._calls.labels(self.pipeline, self.provider.name, outcome).inc()
        log.warning(
            "event=enrich_call_retry pipeline=%s provider=%s attempt=%d error=%s delay_s=%.2f",
            self.pipeline, self.provider.name, state.attempt_number, type(failure).__name__,
            state.upcoming_sleep,
        )
