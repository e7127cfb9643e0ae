"""Structured logging, one event per line to stderr: `key=value` pairs (text, the default) or one JSON object per
line (`--log-format json`, or HEADWATER_LOG_FORMAT=json) whose keys are the event's own."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"
# A pair starts at a `key=` preceded by the line's start or a space; its value runs to the next pair, so values
# with spaces (`error=ProviderUnavailable: connection refused`) stay whole.
_PAIR = re.compile(r"(?:^|(?<= ))([A-Za-z_][A-Za-z0-9_.]*)=")


def fields(message: str) -> dict[str, str]:
    """The `key=value` pairs of an event line; {"message": line} for a line that has none (a third party's)."""
    starts = list(_PAIR.finditer(message))
    if not starts or starts[0].start() != 0:
        return {"message": message}
    found: dict[str, str] = {}
    for this, following in zip(starts, [*starts[1:], None], strict=True):
        end = following.start() if following is not None else len(message)
        found[this.group(1)] = message[this.end():end].rstrip(" ")
    return found


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, then the event's pairs; a traceback under `traceback`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        for key, value in fields(record.getMessage()).items():
            line.setdefault(key, value)  # an event's own `level` or `ts` does not hide the record's
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT)


def configure_logging(verbose: bool = False, log_format: LogFormat = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    for package in ("headwater", "schemas", "quality", "connectors", "streams"):
        logging.getLogger(package).setLevel(logging.DEBUG if verbose else logging.INFO)


def use_log_format(log_format: LogFormat) -> None:
    """Switch the handlers `configure_logging` installed to `log_format` (a command's own --log-format)."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter(log_format))
