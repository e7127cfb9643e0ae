"""Python hooks and an enrichment provider that the pipeline tests name in their pipeline definitions."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from streams.enrich import register
from streams.enrich.base import Enriched, EnrichOutcome, Provider, ProviderConfig


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

    async def enrich(self, batch: Sequence[Mapping[str, Any]]) -> list[EnrichOutcome]:
        texts = [record.get(self.config.text_field) for record in batch]
        if "RAISE" in texts:
            raise ConnectionError("upstream said 500")
        if "SLOW" in texts:
            await asyncio.sleep(30)
        return [Enriched({"summary": f"len={len(text or '')}"}, cost_usd=0.001) for text in texts]


register(FlakyProvider.name, FlakyConfig, FlakyProvider)
