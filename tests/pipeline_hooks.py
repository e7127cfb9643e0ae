"""Python hooks and enrichment providers that the pipeline tests name in their pipeline definitions."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from pydantic import Field

from streams.enrich import register
from streams.enrich.base import Enriched, EnrichOutcome, Provider, ProviderConfig, ProviderUnavailable
from streams.enrich.pricing import PriceList


def explode_on_marker(record: dict[str, Any]) -> dict[str, Any]:
    if record.get("first_name") == "EXPLODE":
        raise RuntimeError("hook refused the record")
    return {**record, "job_title": (record.get("job_title") or "").upper() or None}


class FlakyConfig(ProviderConfig):
    text_field: str = Field("notes", description="Field whose marker decides the behaviour.")


class FlakyProvider(Provider):
    """Raises for a record whose text is RAISE, hangs on SLOW, else writes `summary`."""

    name = "flaky"
    config: FlakyConfig

    @property
    def model(self) -> str:
        return "flaky-1"

    def input_fields(self) -> list[str]:
        return [self.config.text_field]

    def output_fields(self) -> list[str]:
        return ["summary"]

    def price_list(self) -> PriceList:
        return PriceList({"calls": 0.001})

    async def enrich(self, batch: Sequence[Mapping[str, Any]]) -> list[EnrichOutcome]:
        texts = [record.get(self.config.text_field) for record in batch]
        if "RAISE" in texts:
            raise ConnectionError("upstream said 500")
        if "SLOW" in texts:
            await asyncio.sleep(30)
        return [Enriched({"summary": f"len={len(text or '')}"}, {"calls": 1}) for text in texts]


register(FlakyProvider.name, FlakyConfig, FlakyProvider)


class SwitchableConfig(ProviderConfig):
    down_while: str | None = Field(None, description="While this file exists, every call reports an outage.")
    bug_on: str | None = Field(None, description="A `notes` text for which the provider breaks its contract.")


class SwitchableProvider(Provider):
    """An outage while the `down_while` file exists (as a remote provider whose connections are refused); for a
    record whose notes are `bug_on`, an outcome without fields (a bug the stage cannot blame on a record)."""

    name = "switchable"
    config: SwitchableConfig

    @property
    def model(self) -> str:
        return "switchable-1"

    def input_fields(self) -> list[str]:
        return ["notes"]

    def output_fields(self) -> list[str]:
        return ["summary"]

    async def enrich(self, batch: Sequence[Mapping[str, Any]]) -> list[EnrichOutcome]:
        if self.config.down_while is not None and await asyncio.to_thread(Path(self.config.down_while).exists):
            raise ProviderUnavailable(self.name, "connection refused")
        return [
            Enriched(cast(dict[str, Any], None) if record.get("notes") == self.config.bug_on else {"summary": "ok"})
            for record in batch
        ]


register(SwitchableProvider.name, SwitchableConfig, SwitchableProvider)
