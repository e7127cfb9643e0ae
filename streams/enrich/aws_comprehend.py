"""Amazon Comprehend on a text field: sentiment, entities, key phrases or dominant language through the batch APIs
(25 documents a call), or PII entities through DetectPiiEntities (one document a call).

Comprehend counts document sizes in UTF-8 bytes while the stage's `max_chars` counts characters, so a document still
over the service's limit after the stage's cut is cut here on a character boundary, and billed as sent: units of 100
characters, at least 3 a document. Empty texts, and texts in a language the operation does not support, get null
outputs without being sent.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import Field, model_validator

from headwater import fields
from streams.enrich import aws, provider_index
from streams.enrich.base import (
    Enriched,
    EnrichFailure,
    EnrichOutcome,
    Provider,
    ProviderUnavailable,
)
from streams.enrich.pricing import PriceList

Operation = Literal["sentiment", "entities", "key_phrases", "language", "pii"]
LanguageCode = Literal["en", "es", "fr", "de", "it", "pt", "ar", "hi", "ja", "ko", "zh", "zh-TW"]

MAX_DOCUMENTS = 25
BATCH_DOCUMENT_BYTES = 5_000
PII_DOCUMENT_BYTES = 100_000
UNIT_CHARACTERS = 100
MINIMUM_UNITS = 3

PRICES = PriceList(
    {"units": 0.0001}, read_on="2026-12-01", source="https://aws.amazon.com/comprehend/pricing/"
)
"""The standard APIs and PII detection, first 10 million units a month."""

_LANGUAGES: tuple[str, ...] = ("en", "es", "fr", "de", "it", "pt", "ar", "hi", "ja", "ko", "zh", "zh-TW")
_PII_LANGUAGES = ("en", "es")


@dataclass(frozen=True)
class _Api:
    operation: str
    """The boto3 method."""
    default_output: str
    languages: tuple[str, ...]
    """Languages the operation analyses; empty for dominant language, which takes none."""


_APIS: dict[str, _Api] = {
    "sentiment": _Api("batch_detect_sentiment", "sentiment", _LANGUAGES),
    "entities": _Api("batch_detect_entities", "entities", _LANGUAGES),
    "key_phrases": _Api("batch_detect_key_phrases", "key_phrases", _LANGUAGES),
    "language": _Api("batch_detect_dominant_language", "language", ()),
    "pii": _Api("detect_pii_entities", "pii_entities", _PII_LANGUAGES),
}


class ComprehendConfig(aws.AwsConfig):
    operation: Operation = Field(
        description=(
            "sentiment (Positive minus Negative score, -1 to 1), entities (a list of {text, type, score}), "
            "key_phrases (a list of phrases), language (ISO 639-1 code of the dominant language), pii (a list of "
            "{type, score, begin_offset, end_offset} through DetectPiiEntities, one document a call; offsets into "
            "the text as sent, after the stage's cut and redaction)."
        )
    )
    text_field: str = Field(description="Dotted path of the text to analyse; records without text get null.")
    language_code: LanguageCode = Field(
        "en", description="Language of the texts (not used by `language`); `pii` supports en and es."
    )
    language_field: str | None = Field(
        None,
        description=(
            "Dotted path of each record's own language code (e.g. a `language` step's output); records without one "
            "use language_code, records in a language the operation does not support get null."
        ),
    )
    output_field: str | None = Field(
        None,
        description="Field receiving the answer; default sentiment, entities, key_phrases, language, pii_entities.",
    )
    label_field: str | None = Field(
        None, description="sentiment only: field receiving Comprehend's label (POSITIVE, NEGATIVE, NEUTRAL, MIXED)."
    )
    score_field: str | None = Field(
        None, description="language only: field receiving the confidence (0 to 1) of the detected language."
    )

    @model_validator(mode="after")
    def _options_fit_operation(self) -> ComprehendConfig:
        if self.label_field and self.operation != "sentiment":
            raise ValueError("label_field applies to operation sentiment only")
        if self.score_field and self.operation != "language":
            raise ValueError("score_field applies to operation language only")
        if self.language_field and self.operation == "language":
            raise ValueError("operation language detects the language; language_field does not apply")
        if self.operation == "pii" and self.language_code not in _PII_LANGUAGES:
            raise ValueError(f"operation pii supports language_code {' or '.join(_PII_LANGUAGES)}")
        return self


def billed_units(text: str) -> int:
    """Comprehend's billing: units of 100 characters, at least 3 a document."""
    return max(MINIMUM_UNITS, math.ceil(len(text) / UNIT_CHARACTERS))


class ComprehendProvider(Provider):
    name = "aws_comprehend"
    remote = True
    max_batch = MAX_DOCUMENTS
    default_max_chars = BATCH_DOCUMENT_BYTES
    config: ComprehendConfig

    def __init__(self, config: ComprehendConfig) -> None:
        super().__init__(config)
        self._api = _APIS[config.operation]
        self._output = config.output_field or self._api.default_output
        self._supported = {language.lower(): language for language in self._api.languages}
        self._client: Any = None

    @property
    def model(self) -> str:
        return f"comprehend-{self.config.operation}"

    def input_fields(self) -> list[str]:
        return [self.config.text_field, *([self.config.language_field] if self.config.language_field else [])]

    def output_fields(self) -> list[str]:
        extra = self.config.label_field or self.config.score_field
        return [self._output, *([extra] if extra else [])]

    def batch_limit(self) -> int:
        return 1 if self.config.operation == "pii" else super().batch_limit()

    def price_list(self) -> PriceList:
        return PRICES

    async def start(self) -> None:
        """A client, and one smallest call of the operation itself (3 units, $0.0003): it proves the endpoint answers
        and the credentials may call exactly this operation."""
        self._client = await asyncio.to_thread(aws.client, "comprehend", self.config)
        if self.config.operation == "pii":
            await aws.check_reachable(
                self._client, self._api.operation, Text="Headwater", LanguageCode=self.config.language_code
            )
        else:
            params = self._params(["Headwater"], self.config.language_code)
            await aws.check_reachable(self._client, self._api.operation, **params)

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _language(self, record: Mapping[str, Any]) -> str | None:
        """The language to send the record's text in, or None when the operation does not support it."""
        code: Any = None
        if self.config.language_field:
            code = fields.get(record, fields.split(self.config.language_field))
        if not isinstance(code, str) or not code:
            code = self.config.language_code
        return self._supported.get(code.lower())

    def _params(self, texts: list[str], language: str) -> dict[str, Any]:
        params: dict[str, Any] = {"TextList": texts}
        if self._api.languages:
            params["LanguageCode"] = language
        return params

    def _null(self) -> Enriched:
        return Enriched(dict.fromkeys(self.output_fields()))

    def _fields(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """Output fields from one document's result."""
        operation = self.config.operation
        if operation == "sentiment":
            scores = result["SentimentScore"]
            found: dict[str, Any] = {self._output: round(float(scores["Positive"]) - float(scores["Negative"]), 4)}
            if self.config.label_field:
                found[self.config.label_field] = result["Sentiment"]
            return found
        if operation == "entities":
            return {
                self._output: [
                    {"text": entity["Text"], "type": entity["Type"], "score": round(float(entity["Score"]), 4)}
                    for entity in result.get("Entities", [])
                ]
            }
        if operation == "key_phrases":
            return {self._output: [phrase["Text"] for phrase in result.get("KeyPhrases", [])]}
        if operation == "language":
            languages = result.get("Languages", [])
            top = max(languages, key=lambda language: float(language["Score"])) if languages else None
            found = {self._output: top["LanguageCode"] if top else None}
            if self.config.score_field:
                found[self.config.score_field] = round(float(top["Score"]), 4) if top else None
            return found
        return {
            self._output: [
                {
                    "type": entity["Type"],
                    "score": round(float(entity["Score"]), 4),
                    "begin_offset": entity["BeginOffset"],
                    "end_offset": entity["EndOffset"],
                }
                for entity in result.get("Entities", [])
            ]
        }

    async def _call(self, language: str, items: list[tuple[int, str]]) -> list[tuple[int, EnrichOutcome]]:
        """One service call for documents of one language; `items` are (position in the batch, text to send)."""
        texts = [text for _, text in items]
        try:
            if self.config.operation == "pii":
                answer = await aws.call(self._client, self._api.operation, Text=texts[0], LanguageCode=language)
                results, errors = {0: answer}, {}
            else:
                answer = await aws.call(self._client, self._api.operation, **self._params(texts, language))
                results = {result["Index"]: result for result in answer.get("ResultList", [])}
                errors = {error["Index"]: error for error in answer.get("ErrorList", [])}
        except ClientError as exc:
            code = aws.error_code(exc)
            if code in aws.CREDENTIAL_CODES:
                raise ProviderUnavailable(self.name, f"credentials refused: {code}") from exc
            # Neither a throttle nor a 5xx (aws.call raised those as such): the request's documents are at fault.
            refused = EnrichFailure(code or "ClientError", f"comprehend {self._api.operation}: {exc}")
            return [(position, refused) for position, _ in items]
        outcomes: list[tuple[int, EnrichOutcome]] = []
        for index, (position, text) in enumerate(items):
            outcome: EnrichOutcome
            if index in results:
                outcome = Enriched(self._fields(results[index]), {"units": billed_units(text)})
            elif index in errors:
                error = errors[index]
                outcome = EnrichFailure(
                    str(error.get("ErrorCode", "BatchItemError")),
                    f"comprehend {self._api.operation}: {error.get('ErrorMessage', '')}",
                )
            else:
                outcome = EnrichFailure(
                    "MissingResult", f"comprehend {self._api.operation} returned no result for document {index}"
                )
            outcomes.append((position, outcome))
        return outcomes

    async def enrich(self, batch: Sequence[Mapping[str, Any]]) -> list[EnrichOutcome]:
        if self._client is None:
            raise RuntimeError(f"provider {self.name} used before start()")
        outcomes: list[EnrichOutcome] = [self._null() for _ in batch]
        by_language: dict[str, list[tuple[int, str]]] = {}
        text_path = fields.split(self.config.text_field)
        limit = PII_DOCUMENT_BYTES if self.config.operation == "pii" else BATCH_DOCUMENT_BYTES
        for position, record in enumerate(batch):
            text = fields.get(record, text_path)
            language = self._language(record) if self._api.languages else ""
            if isinstance(text, str) and text.strip() and language is not None:
                by_language.setdefault(language, []).append((position, aws.cut_utf8(text, limit)))
        per_call = 1 if self.config.operation == "pii" else MAX_DOCUMENTS
        calls = [
            self._call(language, items[start : start + per_call])
            for language, items in by_language.items()
            for start in range(0, len(items), per_call)
        ]
        for answer in await aws.gather_calls(calls):
            for position, outcome in answer:
                outcomes[position] = outcome
        return outcomes


provider_index.register(ComprehendProvider.name, ComprehendConfig, ComprehendProvider)
