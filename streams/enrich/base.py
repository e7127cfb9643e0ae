"""The enrichment provider interface: async, batched, one outcome per record, with its own limits and cost.

A provider gets a batch of records and returns, in order, an `Enriched` (fields to add, cost) or an `EnrichFailure`
for each, or raises `ProviderUnavailable` when it cannot answer at all. Remote providers (AWS, OpenAI-compatible,
PII, embeddings) implement the same call with HTTP; local models run their CPU-bound work in `run_cpu_bound` so the
event loop stays free.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")
_CPU_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hw-enrich-cpu")


@dataclass(frozen=True)
class Enriched:
    """Fields a provider adds to one record, and what computing them cost."""

    fields: dict[str, Any]
    cost_usd: float = 0.0


@dataclass(frozen=True)
class EnrichFailure:
    """Why a provider could not enrich one record; `unreachable` when it looked like the provider's fault (a timeout
    or a connection error), which, for every record of a step, means the provider is down."""

    error_class: str
    message: str
    unreachable: bool = False


EnrichOutcome = Enriched | EnrichFailure


class ProviderUnavailable(RuntimeError):
    """The provider as a whole does not answer (outage, not one record's fault): the batch waits and is retried.

    A remote provider raises it for connection failures and 5xx answers; the enrichment stage raises it when every
    record of a call failed on its own with a timeout or a connection error.
    """

    def __init__(self, provider: str, reason: str) -> None:
        super().__init__(f"provider {provider} unavailable: {reason}")
        self.provider = provider


class ProviderConfig(BaseModel):
    """Limits every provider honours; each provider's own options extend this model."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(256, ge=1, description="Records per provider call.")
    concurrency: int = Field(2, ge=1, description="Provider calls in flight at once.")
    timeout_seconds: float = Field(10.0, gt=0, description="Deadline of one provider call.")


@dataclass
class Usage:
    """Calls and cost so far, for metrics and the `hw-enrich` header."""

    records: int = 0
    failures: int = 0
    cost_usd: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class Provider(ABC):
    """One enrichment provider instance, built from its config by the registry."""

    name: ClassVar[str]

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config

    @property
    @abstractmethod
    def model(self) -> str:
        """The model (and version) this provider answers with, for lineage."""

    @abstractmethod
    async def enrich(self, batch: Sequence[Mapping[str, Any]]) -> list[EnrichOutcome]:
        """One outcome per record of the batch, in order."""


async def run_cpu_bound(function: Callable[..., T], *args: Any) -> T:
    """Run CPU-heavy model code on the shared enrichment thread, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_CPU_EXECUTOR, function, *args)
