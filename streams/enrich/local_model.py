"""What every local model provider shares: its model runs in `LocalWorker` processes (one per call in flight), and
a lone record the model cannot finish within the deadline is that record's own failure, never an outage."""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from streams.enrich.base import EnrichFailure, EnrichOutcome, Provider, ProviderConfig
from streams.enrich.local_worker import CallProgress, LocalWorker, ModelFactory

DEADLINE_SHARE = 0.9
"""The provider's own deadline, as a share of `timeout_seconds`: it ends a call before the stage's does, so it is the
provider that says whose fault the overrun was."""


class LocalModelConfig(ProviderConfig):
    """Options of every local model provider."""

    concurrency: int = Field(
        1, ge=1, description="Model processes, each taking one call at a time: each holds its own copy of the model "
        "and can use a core of its own."
    )


class LocalModelProvider(Provider):
    """A provider whose model answers in child processes: `payload` is what the model process gets for a batch,
    `outcomes` reads its answer."""

    def __init__(self, config: LocalModelConfig) -> None:
        super().__init__(config)
        self.worker = LocalWorker(self.name, self.model_factory(), config.concurrency)

    @abstractmethod
    def model_factory(self) -> ModelFactory:
        """The picklable callable that loads the model in a child process."""

    @abstractmethod
    def payload(self, batch: Sequence[Mapping[str, Any]]) -> Any:
        """What the model process is sent for `batch` (plain, picklable values)."""

    @abstractmethod
    def outcomes(self, batch: Sequence[Mapping[str, Any]], answer: Any) -> list[EnrichOutcome]:
        """One outcome per record from the model process's answer."""

    async def start(self) -> None:
        await self.worker.start()

    async def close(self) -> None:
        await self.worker.close()

    async def enrich(self, batch: Sequence[Mapping[str, Any]]) -> list[EnrichOutcome]:
        """A call past the deadline kills its process. For several records that is raised, so the stage retries
        them one by one; for one record whose text the model had started on, it is that record's failure (a local
        model is not a service that can be down: the input is too costly), so it is dead-lettered instead of
        pausing the pipeline. Still waiting for a model to load is raised as a timeout either way."""
        deadline = self.config.timeout_seconds * DEADLINE_SHARE
        progress = CallProgress()
        try:
            async with asyncio.timeout(deadline):
                answer = await self.worker.call(self.payload(batch), progress)
        except TimeoutError:
            if len(batch) > 1 or not progress.sent:
                raise
            return [EnrichFailure(
                "TimeoutError", f"provider {self.name}: the model did not finish this record within {deadline:g}s "
                "(its process was killed: the input is too costly for the model)",
            )]
        return self.outcomes(batch, answer)
