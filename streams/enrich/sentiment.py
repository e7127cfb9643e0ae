"""Sentiment of a text field with vaderSentiment (local, offline): VADER's compound score in [-1, 1]."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from importlib.metadata import version
from typing import Any

from pydantic import Field
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from headwater import fields
from streams.enrich import provider_index
from streams.enrich.base import Enriched, EnrichOutcome, Provider, ProviderConfig, run_cpu_bound


class SentimentConfig(ProviderConfig):
    text_field: str = Field(description="Dotted path of the text to score; records without text get null.")
    output_field: str = Field("sentiment", description="Field receiving the compound score (-1 to 1).")


@cache
def _analyzer() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


class SentimentProvider(Provider):
    name = "sentiment"
    config: SentimentConfig

    @property
    def model(self) -> str:
        return f"vader-{version('vaderSentiment')}"

    def _score(self, texts: list[Any]) -> list[float | None]:
        analyzer = _analyzer()
        return [
            round(float(analyzer.polarity_scores(text)["compound"]), 4) if isinstance(text, str) and text.strip()
            else None
            for text in texts
        ]

    def input_fields(self) -> list[str]:
        return [self.config.text_field]

    def output_fields(self) -> list[str]:
        return [self.config.output_field]

    async def enrich(self, batch: Sequence[Mapping[str, Any]]) -> list[EnrichOutcome]:
        path = fields.split(self.config.text_field)
        scores = await run_cpu_bound(self._score, [fields.get(record, path) for record in batch])
        return [Enriched({self.config.output_field: score}) for score in scores]


provider_index.register(SentimentProvider.name, SentimentConfig, SentimentProvider)
