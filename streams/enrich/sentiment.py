"""Sentiment of a text field with vaderSentiment (local, offline): VADER's compound score in [-1, 1].

VADER's time grows with the number of sentiment words times the number of words (each sentiment word after a
non-lexicon word re-reads the whole text), so it runs in a child process (`local_worker`) that is killed when a call
overruns its deadline, and its input is bounded by default to what scores well within the default timeout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.metadata import version
from typing import Any

from pydantic import Field
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from headwater import fields
from streams.enrich import provider_index
from streams.enrich.base import Enriched, EnrichOutcome
from streams.enrich.local_model import LocalModelConfig, LocalModelProvider
from streams.enrich.local_worker import ModelFactory

DEFAULT_MAX_CHARS = 8_000


class SentimentConfig(LocalModelConfig):
    text_field: str = Field(description="Dotted path of the text to score; records without text get null.")
    output_field: str = Field("sentiment", description="Field receiving the compound score (-1 to 1).")
    max_chars: int | None = Field(
        None, ge=1,
        description=f"Longest text scored; default {DEFAULT_MAX_CHARS:,} characters. Ordinary notes that long score "
        "in milliseconds; the worst case, a sentiment word after every other word ('a ok a ok ...'), took 1.9 s on a "
        "loaded 2-core machine, under a quarter of the default 10 s timeout (10,000 characters took 4.4 s: the time "
        "grows with the square of the length).",
    )


class VaderScorer:
    """The child's model: loads VADER's lexicon once, then scores a list of texts per call."""

    def __init__(self) -> None:
        self.analyzer = SentimentIntensityAnalyzer()

    def __call__(self, texts: list[Any]) -> list[float | None]:
        return [
            round(float(self.analyzer.polarity_scores(text)["compound"]), 4) if isinstance(text, str) and text.strip()
            else None
            for text in texts
        ]


class SentimentProvider(LocalModelProvider):
    name = "sentiment"
    default_max_chars = DEFAULT_MAX_CHARS
    config: SentimentConfig

    def model_factory(self) -> ModelFactory:
        return VaderScorer

    @property
    def model(self) -> str:
        return f"vader-{version('vaderSentiment')}"

    def input_fields(self) -> list[str]:
        return [self.config.text_field]

    def output_fields(self) -> list[str]:
        return [self.config.output_field]

    def payload(self, batch: Sequence[Mapping[str, Any]]) -> list[Any]:
        path = fields.split(self.config.text_field)
        return [fields.get(record, path) for record in batch]

    def outcomes(self, batch: Sequence[Mapping[str, Any]], answer: list[float | None]) -> list[EnrichOutcome]:
        return [Enriched({self.config.output_field: score}) for score in answer]


provider_index.register(SentimentProvider.name, SentimentConfig, SentimentProvider)
