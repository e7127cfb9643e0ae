"""What an HTTP API's error status means to the enrichment stage, for the providers built on an official SDK
(OpenAI, Anthropic): slow down, try again, the service is down for us, or the request itself was at fault."""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from time import time

from streams.enrich.base import ProviderUnavailable, Throttled, TransientError

OVERLOADED = 529
"""Anthropic's "overloaded_error": the service asks every client to slow down."""
_DOWN_FOR_US = frozenset({401, 403, 404})
"""A rejected key, a revoked permission or a model that is gone: no record is at fault, and retrying soon will not
help, so the pipeline pauses instead of dead-lettering everything."""
_TRY_AGAIN = frozenset({408, 409})


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the service asked to wait: `retry-after-ms` (OpenAI), else `retry-after` in seconds or as a date."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time())
    except (TypeError, ValueError):
        return None


def service_error(
    provider: str, status: int, message: str, headers: Mapping[str, str]
) -> Throttled | TransientError | ProviderUnavailable | None:
    """The exception for an error answer that concerns the service as a whole, or None when the request itself was
    rejected (a 400 or 422: that record's own problem)."""
    if status in (429, OVERLOADED):
        return Throttled(f"{provider} answered {status}: {message}", retry_after(headers))
    if status >= 500 or status in _TRY_AGAIN:
        return TransientError(f"{provider} answered {status}: {message}")
    if status in _DOWN_FOR_US:
        return ProviderUnavailable(provider, f"answered {status}: {message}")
    return None
