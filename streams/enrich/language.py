"""Language of a text field with py3langid (local, offline): an ISO 639-1 code, or null when unsure. Runs in a child
process (`local_worker`) like every local model, so no call can hold the pipeline past its deadline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from importlib.metadata import version
from typing import Any

from py3langid.langid import MODEL_FILE, LanguageIdentifier
from pydantic import Field

from headwater import fields
from streams.enrich import provider_index
from streams.enrich.base import Enriched, EnrichOutcome
from streams.enrich.local_model import LocalModelConfig, LocalModelProvider
from streams.enrich.local_worker import ModelFactory


class LanguageConfig(LocalModelConfig):
    text_field: str = Field(description="Dotted path of the text to identify; records without text get null.")
    output_field: str = Field("language", description="Field receiving the ISO 639-1 code.")
    languages: list[str] | None = Field(
        None, description="Restrict the answer to these ISO 639-1 codes (faster and more accurate when known)."
    )
    min_confidence: float = Field(0.5, ge=0, le=1, description="Below this probability the answer is null.")
    min_chars: int = Field(12, ge=1, description="Texts shorter than this are too short to tell; null.")
    max_chars: int = Field(
        240, ge=16, description="Only the first this many characters are read: enough to tell, and bounded cost."
    )


class LangidIdentifier:
    """The child's model: loads py3langid's model once, then identifies a list of texts per call."""

    def __init__(self, config: LanguageConfig) -> None:
        self.config = config
        self.identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        if config.languages:
            self.identifier.set_languages(config.languages)

    def __call__(self, texts: list[Any]) -> list[str | None]:
        found: list[str | None] = []
        for text in texts:
            if not isinstance(text, str) or len(text.strip()) < self.config.min_chars:
                found.append(None)
                continue
            code, confidence = self.identifier.classify(text[: self.config.max_chars])
            found.append(str(code) if confidence >= self.config.min_confidence else None)
        return found


class LanguageProvider(LocalModelProvider):
    name = "language"
    config: LanguageConfig

    def model_factory(self) -> ModelFactory:
        return partial(LangidIdentifier, self.config)

    @property
    def model(self) -> str:
        return f"py3langid-{version('py3langid')}"

    def input_fields(self) -> list[str]:
        return [self.config.text_field]

    def output_fields(self) -> list[str]:
        return [self.config.output_field]

    def payload(self, batch: Sequence[Mapping[str, Any]]) -> list[Any]:
        path = fields.split(self.config.text_field)
        return [fields.get(record, path) for record in batch]

    def outcomes(self, batch: Sequence[Mapping[str, Any]], answer: list[str | None]) -> list[EnrichOutcome]:
        return [Enriched({self.config.output_field: code}) for code in answer]


provider_index.register(LanguageProvider.name, LanguageConfig, LanguageProvider)
