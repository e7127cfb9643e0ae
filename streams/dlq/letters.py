"""Dead letters as the repair loop reads them: the envelope's headers parsed, the original bytes untouched, and a
selection by stage, class, reason and time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import Message

from headwater import envelope
from headwater.api.positions import parse_time
from headwater.envelope import HeaderList
from headwater.settings import HeadwaterSettings
from streams.replay.compare import read_all, text_headers
from streams.runtime.records import InMessage


@dataclass(frozen=True)
class DeadLetter:
    position: str
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    @property
    def stage(self) -> str:
        return self.headers.get(envelope.ERROR_STAGE, "")

    @property
    def error_class(self) -> str:
        return self.headers.get(envelope.ERROR_CLASS, "")

    @property
    def reason(self) -> str:
        return self.headers.get(envelope.ERROR_MESSAGE, "")

    @property
    def at(self) -> datetime | None:
        text = self.headers.get(envelope.ERROR_AT)
        return parse_time(text) if text else None

    @property
    def source(self) -> str:
        """Where the original came from (`topic/partition/offset`), as its dead letter says."""
        return self.headers.get(envelope.SOURCE, self.position)


@dataclass(frozen=True)
class Selection:
    """Which dead letters to take; every given criterion must hold (`reason` is a substring)."""

    stage: str | None = None
    error_class: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def takes(self, letter: DeadLetter) -> bool:
        at = letter.at
        return (
            (self.stage is None or letter.stage == self.stage)
            and (self.error_class is None or letter.error_class == self.error_class)
            and (self.reason is None or self.reason in letter.reason)
            and (self.since is None or (at is not None and at >= self.since))
            and (self.until is None or (at is not None and at < self.until))
        )


def from_message(message: Message) -> DeadLetter:
    position = envelope.source_of(message.topic() or "", message.partition() or 0, message.offset() or 0)
    return DeadLetter(position, message.key(), message.value(), text_headers(message))


def read(settings: HeadwaterSettings, topic: str, selection: Selection) -> Iterator[DeadLetter]:
    """The dead letters of `topic` that `selection` takes, oldest first per partition."""
    for message in read_all(settings, topic):
        letter = from_message(message)
        if letter.stage and selection.takes(letter):
            yield letter


def original(letter: DeadLetter, raw_headers: HeaderList, timestamp_ms: int) -> InMessage:
    """The record a dead letter holds, as the pipeline first read it: its source position, key, value and headers
    (the error headers left out)."""
    parts = letter.source.rsplit("/", 2)
    if len(parts) != 3 or not (parts[1].isdigit() and parts[2].isdigit()):
        parts = letter.position.rsplit("/", 2)  # a source connector's cursor, not a topic position
    topic, partition, offset = parts
    errors = {envelope.ERROR_STAGE, envelope.ERROR_CLASS, envelope.ERROR_MESSAGE, envelope.ERROR_AT}
    headers = [(name, value) for name, value in raw_headers if name not in errors]
    return InMessage(topic, int(partition), int(offset), letter.key, letter.value, headers, timestamp_ms)
