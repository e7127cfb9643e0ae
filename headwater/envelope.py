"""Record headers shared by every part: lineage headers and the dead-letter envelope of ARCHITECTURE.md."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal

HeaderList = list[tuple[str, bytes]]

SOURCE = "hw-source"
PIPELINE = "hw-pipeline"
SCHEMA_IN = "hw-schema-in"
SCHEMA_OUT = "hw-schema-out"
TRACE_ID = "hw-trace-id"
ENRICH = "hw-enrich"
QUALITY = "hw-quality"

ERROR_STAGE = "hw-error-stage"
ERROR_CLASS = "hw-error-class"
ERROR_MESSAGE = "hw-error-message"
ERROR_AT = "hw-error-at"
# A dead letter too large for its topic (ARCHITECTURE.md): its value holds the first bytes of the original.
ERROR_TRUNCATED = "hw-error-truncated"
ERROR_ORIGINAL_SIZE = "hw-error-original-size"
ERROR_ORIGINAL_SHA256 = "hw-error-original-sha256"
ERROR_CLAIM_CHECK = "hw-error-claim-check"

ErrorStage = Literal["decode", "transform", "enrich", "quality", "encode", "produce", "sink", "source"]
MAX_ERROR_MESSAGE_BYTES = 1024
_ERROR_HEADERS = frozenset({ERROR_STAGE, ERROR_CLASS, ERROR_MESSAGE, ERROR_AT, SOURCE})


def source_of(topic: str, partition: int, offset: int) -> str:
    return f"{topic}/{partition}/{offset}"


def header_value(headers: Iterable[tuple[str, bytes | str | None]] | None, name: str) -> str | None:
    """The last value of a header as text, or None when absent (later headers win, as Kafka clients read them)."""
    found: str | None = None
    for key, value in headers or ():
        if key == name and value is not None:
            found = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    return found


def _truncate_utf8(text: str, limit: int) -> bytes:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return data
    return data[: limit - 3].decode("utf-8", errors="ignore").encode("utf-8") + b"..."


def dead_letter_headers(
    original: Sequence[tuple[str, bytes | None]] | None,
    *,
    stage: ErrorStage,
    error_class: str,
    message: str,
    source: str,
    at: datetime | None = None,
) -> HeaderList:
    """The original headers (minus any earlier error headers) plus the dead-letter envelope.

    A record dead-lettered twice (replayed after a fix, failing again) carries only its latest reason.
    """
    kept: HeaderList = [(key, value or b"") for key, value in original or () if key not in _ERROR_HEADERS]
    moment = (at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds")
    one_line = " ".join(message.split())
    return [
        *kept,
        (ERROR_STAGE, stage.encode()),
        (ERROR_CLASS, error_class.encode("utf-8")),
        (ERROR_MESSAGE, _truncate_utf8(one_line, MAX_ERROR_MESSAGE_BYTES)),
        (ERROR_AT, moment.replace("+00:00", "Z").encode()),
        (SOURCE, source.encode("utf-8")),
    ]


def enrich_header(steps: Sequence[Mapping[str, object]]) -> bytes:
    """`hw-enrich` as compact JSON: one entry per enrichment step (see ARCHITECTURE.md)."""
    return json.dumps(steps, separators=(",", ":")).encode()
