"""Calls to a SaaS API that throttles: a 429 waits for its Retry-After, 5xx answers and timeouts back off
exponentially, and when that persists the runner gets a RetryableError (it retries later, committing nothing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import Field
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from connectors.base import ConnectorConfig, RetryableError

T = TypeVar("T")


class SaaSConfig(ConnectorConfig):
    """Polling and request settings every SaaS source has."""

    poll_interval: float = Field(default=30.0, gt=0, description="Seconds between polls once caught up.")
    request_timeout: float = Field(default=30.0, gt=0, description="Seconds one HTTP request may take.")
    max_retries: int = Field(default=5, ge=0, description="Retries of a 429/5xx/timeout before giving up for now.")


class Throttled(Exception):
    """The service cannot answer now: wait `wait` seconds (its Retry-After), or back off when that is 0."""

    def __init__(self, wait: float, reason: str) -> None:
        super().__init__(reason)
        self.wait = wait


def retry_after(headers: Any) -> float:
    """Seconds of a Retry-After header (0 when absent or unreadable)."""
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0


def throttle_wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, Throttled) and exc.wait > 0:
        return exc.wait
    backoff: float = wait_exponential(multiplier=0.5, max=30)(state)
    return backoff


def call_with_retries(
    call: Callable[[], T],
    service: str,
    max_retries: int,
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> T:
    """`call()` retried while it raises Throttled; after `max_retries` retries, RetryableError naming the reason."""
    try:
        for attempt in Retrying(
            retry=retry_if_exception_type(Throttled),
            stop=stop_after_attempt(max_retries + 1),
            wait=throttle_wait,
            before_sleep=before_sleep,
            reraise=True,
        ):
            with attempt:
                return call()
    except Throttled as exc:
        raise RetryableError(f"{service} unavailable after {max_retries + 1} attempts ({exc})") from exc
    raise AssertionError("unreachable")
