"""Waiting for a dependency (broker, registry) that does not answer yet: bounded exponential backoff, logged."""

from __future__ import annotations

import logging
import threading

from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_delay,
    stop_when_event_set,
    wait_exponential,
)

log = logging.getLogger(__name__)


class DependencyDown(RuntimeError):
    """The broker or the registry does not answer (yet)."""


def backoff(deadline: float, halt: threading.Event | None = None) -> Retrying:
    """Retries `DependencyDown` with exponential backoff (0.2 s to 5 s) until `deadline` seconds or `halt`."""
    stop = stop_after_delay(deadline) | stop_when_event_set(halt) if halt is not None else stop_after_delay(deadline)
    return Retrying(
        retry=retry_if_exception_type(DependencyDown),
        wait=wait_exponential(multiplier=0.2, max=5),
        stop=stop,
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    )
