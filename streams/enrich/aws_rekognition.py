"""Labels of an image with Amazon Rekognition: DetectLabels (objects, scenes, concepts) or DetectModerationLabels
(unsafe content), on a field holding an `s3://bucket/key` reference or the image's bytes.

Rekognition takes one image per call, so the batch limit is 1 and the stage's `concurrency` sets how many images are
in flight. An image that does not exist or is not an image fails only its record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from botocore.exceptions import ClientError
from pydantic import Field, model_validator

from headwater import fields
from streams.enrich import aws, provider_index
from streams.enrich.aws_object import BadReference, refuse_redaction, refused, service_object
from streams.enrich.base import Enriched, EnrichFailure, EnrichOutcome, Provider
from streams.enrich.pricing import PriceList

# Codes Rekognition answers when the record's own image is at fault, not the service.
IMAGE_FAULTS = frozenset(
    {"InvalidS3ObjectException", "InvalidImageFormatException", "ImageTooLargeException", "InvalidParameterException"}
)
PRICES = PriceList(
    # DetectLabels and DetectModerationLabels: $1.00 per 1,000 images, first million a month (us-east-1).
    {"images": 0.001},
    read_on="2026-12-01",
    source="https://aws.amazon.com/rekognition/pricing/",
)
# One byte that is no image: Rekognition refuses it (unbilled) after checking the signature, which is all start needs.
_PROBE_IMAGE = {"Bytes": b"\x00"}


class RekognitionConfig(aws.AwsConfig):
    operation: Literal["labels", "moderation"] = Field(
        "labels", description="`labels`: DetectLabels; `moderation`: DetectModerationLabels (unsafe content)."
    )
    image_field: str = Field(
        description="Dotted path of the image: an `s3://bucket/key` reference (a bucket in `region`) or the image "
        "bytes (JPEG or PNG, at most 5 MB); records without an image get null."
    )
    output_field: str = Field("labels", description="Field receiving the labels, most confident first.")
    output_format: Literal["names", "scored"] = Field(
        "names",
        description="`names`: a list of label names; `scored`: a list of `{name, confidence}` records, confidence "
        "in percent (0-100).",
    )
    max_labels: int | None = Field(
        None, ge=1, description="Most labels DetectLabels returns (operation `labels` only); default the service's."
    )
    min_confidence: float | None = Field(
        None, ge=0, le=100, description="Lowest confidence (percent) of a returned label; default the service's."
    )

    @model_validator(mode="after")
    def _options_apply(self) -> RekognitionConfig:
        if self.max_labels is not None and self.operation != "labels":
            raise ValueError("max_labels applies to operation labels only (DetectModerationLabels has no limit)")
        refuse_redaction(self)
        return self


class RekognitionProvider(Provider):
    """Labels of an image (an `s3://` reference or bytes) by Amazon Rekognition: objects and scenes, or moderation."""

    name = "aws_rekognition"
    remote = True
    max_batch = 1
    config: RekognitionConfig
    _OPERATIONS: ClassVar[dict[str, tuple[str, str]]] = {
        "labels": ("detect_labels", "Labels"),
        "moderation": ("detect_moderation_labels", "ModerationLabels"),
    }

    def __init__(self, config: RekognitionConfig) -> None:
        super().__init__(config)
        self._client: Any = None

    @property
    def model(self) -> str:
        return f"rekognition/{self._OPERATIONS[self.config.operation][0].replace('_', '-')}"

    def input_fields(self) -> list[str]:
        return [self.config.image_field]

    def text_fields(self) -> list[str]:
        return []  # an s3:// reference or bytes: cutting or redacting it would break it

    def output_fields(self) -> list[str]:
        return [self.config.output_field]

    def price_list(self) -> PriceList:
        return PRICES

    async def start(self) -> None:
        self._client = aws.client("rekognition", self.config)
        await aws.check_reachable(self._client, self._OPERATIONS[self.config.operation][0], Image=_PROBE_IMAGE)

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.config.max_labels is not None:
            options["MaxLabels"] = self.config.max_labels
        if self.config.min_confidence is not None:
            options["MinConfidence"] = self.config.min_confidence
        return options

    def _labels(self, answer: Mapping[str, Any], key: str) -> list[Any]:
        labels = sorted(answer.get(key, []), key=lambda label: -float(label.get("Confidence", 0.0)))
        if self.config.output_format == "names":
            return [label["Name"] for label in labels]
        return [{"name": label["Name"], "confidence": float(label.get("Confidence", 0.0))} for label in labels]

    async def _one(self, record: Mapping[str, Any]) -> EnrichOutcome:
        value = fields.get(record, fields.split(self.config.image_field))
        if value is None:
            return Enriched({self.config.output_field: None})
        try:
            image = service_object(value)
        except BadReference as exc:
            return EnrichFailure("BadReference", f"{self.config.image_field}: {exc}")
        operation, key = self._OPERATIONS[self.config.operation]
        try:
            answer = await aws.call(self._client, operation, Image=image, **self._options())
        except ClientError as exc:
            if aws.error_code(exc) in IMAGE_FAULTS:
                return refused(exc, value)
            raise
        return Enriched({self.config.output_field: self._labels(answer, key)}, billed={"images": 1})

    async def enrich(self, batch: Sequence[Mapping[str, Any]]) -> list[EnrichOutcome]:
        # max_batch is 1: a batch is one image (the loop keeps a larger one correct, one call after another).
        return [await self._one(record) for record in batch]


provider_index.register(RekognitionProvider.name, RekognitionConfig, RekognitionProvider)
