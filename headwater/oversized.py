"""Dead letters larger than their topic accepts: cut to fit, saying what was cut and where the whole original is.

A truncated dead letter keeps its headers and the first bytes of the original value, and adds
`hw-error-truncated: true`, `hw-error-original-size` and `hw-error-original-sha256`. With a claim check configured
the whole original is uploaded to S3 first and `hw-error-claim-check` carries its `s3://` URI. Used by every part
that writes dead letters, so they all truncate the same way.
"""

from __future__ import annotations

import hashlib
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field

from headwater import envelope
from headwater.dependencies import DependencyDown
from headwater.envelope import HeaderList

# A dead letter's topic allows the input topic's limit plus this, for the error headers added to the original.
DEAD_LETTER_HEADROOM = 16 * 1024
# Kafka's framing of a record batch holding one record (batch header, record varints), counted generously.
_BATCH_OVERHEAD = 61 + 21
_HEADER_OVERHEAD = 10
_TRUNCATION_HEADERS = frozenset({
    envelope.ERROR_TRUNCATED, envelope.ERROR_ORIGINAL_SIZE, envelope.ERROR_ORIGINAL_SHA256, envelope.ERROR_CLAIM_CHECK,
})


class DeadLetterTooLarge(ValueError):
    """Even with an empty value the dead letter's key and headers exceed its topic's limit."""


def record_size(key: bytes | None, value: bytes | None, headers: HeaderList) -> int:
    """Bytes one record takes in a record batch of its own, Kafka's framing included (an upper bound)."""
    header_bytes = sum(len(name) + len(data) + _HEADER_OVERHEAD for name, data in headers)
    return _BATCH_OVERHEAD + len(key or b"") + len(value or b"") + header_bytes


def truncated(
    key: bytes | None, original: bytes, headers: HeaderList, limit: int, claim_check: str | None = None
) -> tuple[bytes, HeaderList]:
    """The value and headers of a dead letter of `original` within `limit` bytes: the original's first bytes."""
    kept = [(name, data) for name, data in headers if name not in _TRUNCATION_HEADERS]
    added: HeaderList = [
        (envelope.ERROR_TRUNCATED, b"true"),
        (envelope.ERROR_ORIGINAL_SIZE, str(len(original)).encode()),
        (envelope.ERROR_ORIGINAL_SHA256, hashlib.sha256(original).hexdigest().encode()),
    ]
    if claim_check is not None:
        added.append((envelope.ERROR_CLAIM_CHECK, claim_check.encode()))
    fitted = kept + added
    room = limit - record_size(key, b"", fitted)
    if room < 0:
        raise DeadLetterTooLarge(f"dead letter headers and key alone exceed the {limit}-byte limit")
    return original[:room], fitted


class ClaimCheckConfig(BaseModel):
    """Where whole originals of truncated dead letters go. Credentials come from boto3's usual chain (environment,
    shared files, instance role), never from a config file."""

    model_config = ConfigDict(extra="forbid")

    bucket: str = Field(min_length=3, description="S3 bucket receiving the originals.")
    prefix: str = Field("dead-letters/", description="Key prefix; the object key is prefix + hw-source.")
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, a test server).")
    region: str | None = Field(None, description="AWS region of the bucket.")
    request_timeout_s: float = Field(30.0, gt=0, description="Connect and read timeout of one upload.")


class ClaimCheck:
    """Uploads originals under a key derived from their `hw-source`, so a batch replayed after a crash writes the
    same object again instead of a second one."""

    def __init__(self, config: ClaimCheckConfig) -> None:
        self.config = config
        timeout = config.request_timeout_s
        self._s3: Any = boto3.client(
            "s3", endpoint_url=config.endpoint_url, region_name=config.region,
            config=BotoConfig(connect_timeout=timeout, read_timeout=timeout, retries={"mode": "standard"}),
        )

    def store(self, source: str, original: bytes) -> str:
        """Upload `original` (blocking); its `s3://` URI. An unreachable bucket is a dependency that is down."""
        key = f"{self.config.prefix}{source}"
        try:
            self._s3.put_object(Bucket=self.config.bucket, Key=key, Body=original)
        except (BotoCoreError, ClientError) as exc:
            raise DependencyDown(f"claim check bucket {self.config.bucket} refused an upload: {exc}") from exc
        return f"s3://{self.config.bucket}/{key}"
