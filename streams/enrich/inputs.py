"""What a provider is sent of a record: its input fields bounded to `max_chars` (cut, or the record refused) and,
for a third-party service with `redact` set, with PII replaced by typed placeholders.

The record itself keeps its values: a field that must change is changed in a copy (copy-on-write along its path),
so records that need nothing are sent as they are, at no cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from headwater import fields
from streams.enrich.base import EnrichFailure, Provider
from streams.enrich.redaction import Redactor

Record = dict[str, Any]


def _replaced(record: Mapping[str, Any], path: tuple[str, ...], value: Any) -> Record:
    copied = dict(record)
    current = copied
    for part in path[:-1]:
        child = dict(current[part])
        current[part] = child
        current = child
    current[path[-1]] = value
    return copied


class InputShaper:
    def __init__(self, provider: Provider) -> None:
        config = provider.config
        self.provider = provider.name
        self.paths = [fields.split(path) for path in provider.input_fields()]
        self.text_paths = [fields.split(path) for path in provider.text_fields()]
        self.max_chars = config.max_chars or provider.default_max_chars
        self.refuse_long = config.on_too_long == "dead_letter"
        # Built here, off the event loop: presidio's recognizers import spaCy on first use.
        self.redactor = Redactor(config.redact) if provider.remote and config.redact else None

    def inputs(self, record: Mapping[str, Any]) -> list[Any]:
        """The values the provider reads, in `input_fields` order (what the cache key is made of)."""
        return [fields.get(record, path) for path in self.paths]

    def shape(self, record: Mapping[str, Any]) -> Mapping[str, Any] | EnrichFailure:
        sent = record
        for path in self.text_paths:
            value = fields.get(record, path)
            if not isinstance(value, str):
                continue
            shaped = value
            if len(shaped) > self.max_chars:
                if self.refuse_long:
                    return EnrichFailure(
                        "InputTooLong",
                        f"field {'.'.join(path)} has {len(value)} characters, over max_chars {self.max_chars} of "
                        f"provider {self.provider}",
                    )
                shaped = shaped[: self.max_chars]
            if self.redactor is not None:
                shaped = self.redactor.redact(shaped)
            if shaped != value:
                sent = _replaced(sent, path, shaped)
        return sent
