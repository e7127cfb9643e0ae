"""Amazon Translate on a text field: TranslateText, from a known or automatically detected source language.

TranslateText takes one text of at most 10,000 UTF-8 bytes. A longer text is, as configured, split on sentence
boundaries (then on whitespace, then between characters, only where a piece is still too long), its parts translated
concurrently and joined with the whitespace that separated them; or refused as that record's dead letter.
Translate bills every character sent (the whitespace between split parts is not sent).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import Field

from headwater import fields
from streams.enrich import aws, provider_index
from streams.enrich.base import Enriched, EnrichFailure, EnrichOutcome, Provider, ProviderUnavailable
from streams.enrich.pricing import PriceList

MAX_TEXT_BYTES = 10_000
PRICES = PriceList(
    {"characters": 15.0 / 1_000_000}, read_on="2026-12-01", source="https://aws.amazon.com/translate/pricing/"
)
"""Standard real-time translation: $15 per million characters."""

# Sentence ends: terminal punctuation followed by whitespace, or an ideographic full stop, exclamation or question mark
# (CJK puts no space after them). Each pattern captures its separator so that the parts can be joined again exactly.
_SEPARATORS = (re.compile("((?<=[.!?\u2026])\\s+|(?<=[\u3002\uff01\uff1f])\\s*)"), re.compile(r"(\s+)"))


class TranslateConfig(aws.AwsConfig):
    text_field: str = Field(description="Dotted path of the text to translate; records without text get null.")
    target_language: str = Field(
        min_length=2, max_length=5, description="Language code to translate into (`en`, `de`, `zh-TW`...)."
    )
    source_language: str = Field(
        "auto",
        min_length=2,
        max_length=5,
        description="Language code of the texts, or `auto` to let Translate detect it.",
    )
    source_language_field: str | None = Field(
        None,
        description="Dotted path of each record's own source language code; records without one use source_language.",
    )
    output_field: str = Field("translated_text", description="Field receiving the translation.")
    detected_language_field: str | None = Field(
        None, description="Field receiving the source language Translate used (the detected one with `auto`)."
    )
    on_oversize: Literal["split", "dead_letter"] = Field(
        "split",
        description=(
            "A text over 10,000 UTF-8 bytes: split on sentence boundaries and translate the parts, or dead-letter it."
        ),
    )


def utf8_size(text: str) -> int:
    return len(text.encode("utf-8"))


def _pieces(text: str, limit: int, level: int = 0) -> Iterator[tuple[str, str]]:
    """(piece, separator that followed it) over `text`, each piece at most `limit` bytes, split at the coarsest
    boundary that suffices."""
    if utf8_size(text) <= limit:
        yield text, ""
        return
    if level == len(_SEPARATORS):
        while text:
            piece = aws.cut_utf8(text, limit)
            yield piece, ""
            text = text[len(piece) :]
        return
    tokens = _SEPARATORS[level].split(text)
    for index in range(0, len(tokens), 2):
        separator = tokens[index + 1] if index + 1 < len(tokens) else ""
        finer = list(_pieces(tokens[index], limit, level + 1))
        yield from finer[:-1]
        yield finer[-1][0], separator


def split_text(text: str, limit: int = MAX_TEXT_BYTES) -> list[tuple[str, str]]:
    """`text` as parts of at most `limit` UTF-8 bytes, each with the separator that followed it: joining
    part + separator over the list gives `text` back. Sentences are packed whole into as few parts as fit."""
    parts: list[tuple[str, str]] = []
    current: str | None = None
    pending = ""
    for piece, separator in _pieces(text, limit):
        if current is not None and utf8_size(current + pending + piece) <= limit:
            current += pending + piece
        else:
            if current is not None:
                parts.append((current, pending))
            current = piece
        pending = separator
    parts.append((current or "", pending))
    return parts


class TranslateProvider(Provider):
    name = "aws_translate"
    remote = True
    max_batch = 1
    """TranslateText takes one text a call."""
    default_max_chars = 3 * MAX_TEXT_BYTES
    """At most three concurrent calls a record (more when characters take several bytes), within the timeout."""
    config: TranslateConfig

    def __init__(self, config: TranslateConfig) -> None:
        super().__init__(config)
        self._client: Any = None

    @property
    def model(self) -> str:
        return "translate"

    def input_fields(self) -> list[str]:
        source = [self.config.source_language_field] if self.config.source_language_field else []
        return [self.config.text_field, *source]

    def output_fields(self) -> list[str]:
        detected = [self.config.detected_language_field] if self.config.detected_language_field else []
        return [self.config.output_field, *detected]

    def price_list(self) -> PriceList:
        return PRICES

    async def start(self) -> None:
        """A client, and one smallest translation (9 characters): it proves the endpoint answers and the credentials
        may translate."""
        self._client = await asyncio.to_thread(aws.client, "translate", self.config)
        await aws.check_reachable(
            self._client,
            "translate_text",
            Text="Headwater",
            SourceLanguageCode="en",
            TargetLanguageCode=self.config.target_language,
        )

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _source(self, record: Mapping[str, Any]) -> str:
        if self.config.source_language_field:
            code = fields.get(record, fields.split(self.config.source_language_field))
            if isinstance(code, str) and code:
                return code
        return self.config.source_language

    def _null(self) -> Enriched:
        return Enriched(dict.fromkeys(self.output_fields()))

    async def _translate(self, text: str, source: str) -> tuple[str, str]:
        """One TranslateText call: the translation and the source language Translate used."""
        if not text.strip():
            return text, source
        answer = await aws.call(
            self._client,
            "translate_text",
            Text=text,
            SourceLanguageCode=source,
            TargetLanguageCode=self.config.target_language,
        )
        return str(answer["TranslatedText"]), str(answer.get("SourceLanguageCode", source))

    async def _record(self, record: Mapping[str, Any]) -> EnrichOutcome:
        text = fields.get(record, fields.split(self.config.text_field))
        if not isinstance(text, str) or not text.strip():
            return self._null()
        source = self._source(record)
        if source.lower() == self.config.target_language.lower():
            return self._found(text, source, billed=0)
        size = utf8_size(text)
        if size > MAX_TEXT_BYTES and self.config.on_oversize == "dead_letter":
            return EnrichFailure(
                "TextSizeLimitExceeded",
                f"text is {size} UTF-8 bytes, over Translate's {MAX_TEXT_BYTES} (on_oversize: dead_letter)",
            )
        parts = split_text(text)
        try:
            answers = await aws.gather_calls([self._translate(part, source) for part, _ in parts])
        except ClientError as exc:
            code = aws.error_code(exc)
            if code in aws.CREDENTIAL_CODES:
                raise ProviderUnavailable(self.name, f"credentials refused: {code}") from exc
            # Neither a throttle nor a 5xx (aws.call raised those as such): this text is at fault (a language pair
            # Translate lacks, a source it cannot detect).
            return EnrichFailure(code or "ClientError", f"translate: {exc}")
        translated = "".join(answer + separator for (answer, _), (_, separator) in zip(answers, parts, strict=True))
        sent = sum(len(part) for part, _ in parts if part.strip())
        return self._found(translated, answers[0][1], billed=sent)

    def _found(self, translated: str, source: str, billed: int) -> Enriched:
        found: dict[str, Any] = {self.config.output_field: translated}
        if self.config.detected_language_field:
            found[self.config.detected_language_field] = source
        return Enriched(found, {"characters": billed} if billed else {})

    async def enrich(self, batch: Sequence[Mapping[str, Any]]) -> list[EnrichOutcome]:
        if self._client is None:
            raise RuntimeError(f"provider {self.name} used before start()")
        return await aws.gather_calls([self._record(record) for record in batch])


provider_index.register(TranslateProvider.name, TranslateConfig, TranslateProvider)
