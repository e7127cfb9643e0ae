"""What an exception out of a pipeline's stages means: an infrastructure failure (the broker, the registry or an
enrichment provider does not answer: the batch waits and is retried, consumption pauses) or a bug (anything else:
the worker logs its traceback, stops and exits non-zero so a supervisor restarts it).

Records fail one by one inside the stages (they become dead letters), so neither kind is ever a record's fault.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.schema_registry.common._httpx_compat import httpx as registry_http
from confluent_kafka.schema_registry.error import SchemaRegistryError

from headwater.dependencies import DependencyDown
from streams.enrich import ProviderUnavailable
from streams.runtime import metrics

log = logging.getLogger(__name__)

_RETRIABLE_HTTP = frozenset({408, 429})
_MAX_DETAIL = 500


def is_infrastructure(exc: BaseException) -> bool:
    """True when waiting and trying the same batch again can succeed: a dependency is down, not the code wrong."""
    if isinstance(exc, DependencyDown | ProviderUnavailable):
        return True
    if isinstance(exc, SchemaRegistryError):
        return exc.http_status_code >= 500 or exc.http_status_code in _RETRIABLE_HTTP
    if isinstance(exc, KafkaException):
        error = exc.args[0] if exc.args else None
        return isinstance(error, KafkaError) and bool(error.retriable())
    # The registry client's connection refusals and timeouts surface as its HTTP library's transport errors.
    return isinstance(exc, registry_http.TransportError)


def describe(exc: BaseException) -> str:
    """The exception's class and text on one line, bounded, for logs and the readiness answer."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= _MAX_DETAIL else f"{text[:_MAX_DETAIL]}..."


class PipelineFailed(RuntimeError):
    """A stage raised an exception that no retry can fix (a bug); its traceback was logged, the worker stopped."""

    def __init__(self, pipeline: str, error: str) -> None:
        super().__init__(f"pipeline {pipeline} stopped on a bug: {error} (traceback in the log)")
        self.pipeline = pipeline
        self.error = error


def bug(pipeline: str, exc: BaseException, health: Health, **context: object) -> PipelineFailed:
    """Report a bug (call it inside the `except` block, for the traceback): logged, counted, noted in `health`;
    returns the `PipelineFailed` to raise."""
    health.failure = describe(exc)
    metrics.FAILURES.labels(pipeline, type(exc).__name__).inc()
    details = "".join(f" {key}={value}" for key, value in context.items())
    log.exception("event=pipeline_bug pipeline=%s%s error=%s", pipeline, details, health.failure)
    return PipelineFailed(pipeline, health.failure)


@dataclass
class Health:
    """Why a running pipeline is not ready besides its assignment: the dependency a batch waits for, or the bug
    that stopped it."""

    waiting_for: str | None = None
    failure: str | None = None

    @property
    def reason(self) -> str | None:
        if self.failure is not None:
            return f"failed: {self.failure}"
        if self.waiting_for is not None:
            return f"waiting for a dependency: {self.waiting_for}"
        return None


def not_ready_reasons(pipelines: Iterable[tuple[str, Health]]) -> list[str]:
    """`pipeline: reason` for every pipeline that waits for a dependency or failed, for `/readyz`."""
    return [f"{label}: {health.reason}" for label, health in pipelines if health.reason is not None]
