"""The image or document a Rekognition or Textract call reads, from a record's field: an `s3://bucket/key` reference
(the service fetches the object itself) or the bytes themselves; and the answers that are that record's own fault."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from streams.enrich.aws import error_code
from streams.enrich.base import EnrichFailure, ProviderConfig


def refuse_redaction(config: ProviderConfig) -> None:
    """`redact` rewrites text; here the input is a reference or bytes, which redaction would break, not protect."""
    if config.redact:
        raise ValueError(
            "redact does not apply: the service is sent an s3:// reference or the bytes of an image or document, "
            "not text (keep PII out of object keys)"
        )


class BadReference(ValueError):
    """The field holds neither an `s3://bucket/key` reference nor bytes."""


def describe(value: str | bytes) -> str:
    """How a failure names the object: the reference, or the size of inline bytes (never their content)."""
    return value if isinstance(value, str) else f"{len(value)} inline bytes"


def service_object(value: Any) -> dict[str, Any]:
    """The `Image` / `Document` argument for `value`."""
    if isinstance(value, bytes | bytearray):
        return {"Bytes": bytes(value)}
    if isinstance(value, str) and value.startswith("s3://"):
        bucket, _, key = value.removeprefix("s3://").partition("/")
        if bucket and key:
            return {"S3Object": {"Bucket": bucket, "Name": key}}
    shown = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
    raise BadReference(f"expected an s3://bucket/key reference or bytes, got {shown}")


def refused(exc: ClientError, value: str | bytes) -> EnrichFailure:
    """The record's failure for an answer that blames its object (missing, unreadable, too large)."""
    message = exc.response.get("Error", {}).get("Message", "")
    return EnrichFailure(error_code(exc), f"{describe(value)}: {message}")
