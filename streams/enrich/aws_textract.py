"""Text and form fields of a document with Amazon Textract: DetectDocumentText (the text) or AnalyzeDocument with
FeatureTypes FORMS (the text and the key-value pairs), on a field holding an `s3://bucket/key` reference or bytes.

The synchronous calls take one document per call, so the batch limit is 1. The text is the LINE blocks joined by
newlines, in Textract's reading order. Form fields come from KEY_VALUE_SET blocks: a KEY block's CHILD words are the
key (a trailing colon dropped), its VALUE relationship names the VALUE block whose CHILD words (and checkboxes, as
SELECTED / NOT_SELECTED) are the value. A document that does not exist or cannot be read fails only its record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import Field, model_validator

from headwater import fields
from streams.enrich import aws, provider_index
from streams.enrich.aws_object import BadReference, refuse_redaction, refused, service_object
from streams.enrich.base import Enriched, EnrichFailure, EnrichOutcome, Provider
from streams.enrich.pricing import PriceList

# Codes Textract answers when the record's own document is at fault, not the service.
DOCUMENT_FAULTS = frozenset(
    {
        "InvalidS3ObjectException",
        "UnsupportedDocumentException",
        "DocumentTooLargeException",
        "BadDocumentException",
        "InvalidParameterException",
    }
)
_SOURCE = "https://aws.amazon.com/textract/pricing/"
PRICES = {
    # Detect Document Text API: $1.50 per 1,000 pages; Analyze Document API, Forms: $50 per 1,000 pages (first
    # million pages a month, us-east-1).
    "text": PriceList({"pages": 0.0015}, read_on="2026-12-01", source=_SOURCE),
    "forms": PriceList({"pages": 0.05}, read_on="2026-12-01", source=_SOURCE),
}
# One byte that is no document: Textract refuses it (unbilled) after checking the signature, which is all start needs.
_PROBE_DOCUMENT = {"Bytes": b"\x00"}


class TextractConfig(aws.AwsConfig):
    operation: Literal["text", "forms"] = Field(
        "text", description="`text`: DetectDocumentText; `forms`: AnalyzeDocument with FORMS (text and key-values)."
    )
    document_field: str = Field(
        description="Dotted path of the document: an `s3://bucket/key` reference (a bucket in `region`; JPEG, PNG, "
        "single-page PDF or TIFF) or its bytes (at most 10 MB); records without one get null."
    )
    text_output: str = Field("document_text", description="Field receiving the text: its lines joined by newlines.")
    forms_output: str = Field(
        "document_forms",
        description="Field receiving the form's key-value pairs as a map (operation `forms`); a key found twice "
        "keeps both values, joined by a newline.",
    )
    timeout_seconds: float = Field(
        30.0, gt=0, description="Deadline of one call (a dense page of forms takes Textract several seconds)."
    )

    @model_validator(mode="after")
    def _no_redaction(self) -> TextractConfig:
        refuse_redaction(self)
        return self


def document_text(blocks: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(str(block.get("Text", "")) for block in blocks if block.get("BlockType") == "LINE")


def _child_text(block: Mapping[str, Any], by_id: Mapping[str, Mapping[str, Any]]) -> str:
    words: list[str] = []
    for relationship in block.get("Relationships", []):
        if relationship.get("Type") != "CHILD":
            continue
        for child in (by_id.get(block_id) for block_id in relationship.get("Ids", [])):
            if child is None:
                continue
            if child.get("BlockType") == "WORD":
                words.append(str(child.get("Text", "")))
            elif child.get("BlockType") == "SELECTION_ELEMENT":
                words.append(str(child.get("SelectionStatus", "")))
    return " ".join(words)


def form_fields(blocks: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Key-value pairs from KEY_VALUE_SET blocks and their CHILD / VALUE relationships."""
    by_id = {str(block["Id"]): block for block in blocks if "Id" in block}
    pairs: dict[str, str] = {}
    for block in blocks:
        if block.get("BlockType") != "KEY_VALUE_SET" or "KEY" not in block.get("EntityTypes", []):
            continue
        key = _child_text(block, by_id).strip().removesuffix(":").strip()
        if not key:
            continue
        value_ids = [
            value_id
            for relationship in block.get("Relationships", [])
            if relationship.get("Type") == "VALUE"
            for value_id in relationship.get("Ids", [])
        ]
        value = " ".join(text for text in (_child_text(by_id[i], by_id) for i in value_ids if i in by_id) if text)
        pairs[key] = f"{pairs[key]}\n{value}" if key in pairs else value
    return pairs


class TextractProvider(Provider):
    """Text and form key-values of a document (an `s3://` reference or bytes) by Amazon Textract."""

    name = "aws_textract"
    remote = True
    max_batch = 1
    config: TextractConfig

    def __init__(self, config: TextractConfig) -> None:
        super().__init__(config)
        self._client: Any = None

    @property
    def model(self) -> str:
        if self.config.operation == "forms":
            return "textract/analyze-document-forms"
        return "textract/detect-document-text"

    def input_fields(self) -> list[str]:
        return [self.config.document_field]

    def text_fields(self) -> list[str]:
        return []  # an s3:// reference or bytes: cutting or redacting it would break it

    def output_fields(self) -> list[str]:
        if self.config.operation == "forms":
            return [self.config.text_output, self.config.forms_output]
        return [self.config.text_output]

    def price_list(self) -> PriceList:
        return PRICES[self.config.operation]

    def _request(self, document: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if self.config.operation == "forms":
            return "analyze_document", {"Document": document, "FeatureTypes": ["FORMS"]}
        return "detect_document_text", {"Document": document}

    async def start(self) -> None:
        self._client = aws.client("textract", self.config)
        operation, params = self._request(_PROBE_DOCUMENT)
        await aws.check_reachable(self._client, operation, **params)

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _outputs(self, blocks: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
        outputs: dict[str, Any] = {self.config.text_output: None if blocks is None else document_text(blocks)}
        if self.config.operation == "forms":
            outputs[self.config.forms_output] = None if blocks is None else form_fields(blocks)
        return outputs

    async def _one(self, record: Mapping[str, Any]) -> EnrichOutcome:
        value = fields.get(record, fields.split(self.config.document_field))
        if value is None:
            return Enriched(self._outputs(None))
        try:
            operation, params = self._request(service_object(value))
        except BadReference as exc:
            return EnrichFailure("BadReference", f"{self.config.document_field}: {exc}")
        try:
            answer = await aws.call(self._client, operation, **params)
        except ClientError as exc:
            if aws.error_code(exc) in DOCUMENT_FAULTS:
                return refused(exc, value)
            raise
        pages = int(answer.get("DocumentMetadata", {}).get("Pages", 1))
        return Enriched(self._outputs(answer.get("Blocks", [])), billed={"pages": pages})

    async def enrich(self, batch: Sequence[Mapping[str, Any]]) -> list[EnrichOutcome]:
        # max_batch is 1: a batch is one document (the loop keeps a larger one correct, one call after another).
        return [await self._one(record) for record in batch]


provider_index.register(TextractProvider.name, TextractConfig, TextractProvider)
