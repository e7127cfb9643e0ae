"""Which dead letters a DLQ replay re-runs, and as what: the original record, re-read as the pipeline first read it,
with the dead letter's own position kept for `hw-replay-of`."""

from __future__ import annotations

from typing import cast

from confluent_kafka import Message

from headwater.envelope import HeaderList
from streams.dlq.letters import Selection, from_message, original
from streams.replay.run import Admit
from streams.runtime.records import InMessage


def admit_selected(selection: Selection) -> Admit:
    def admit(message: Message) -> tuple[InMessage, str | None] | None:
        letter = from_message(message)
        if not letter.stage or not selection.takes(letter):
            return None
        headers = cast(HeaderList, list(message.headers() or []))
        return original(letter, headers, message.timestamp()[1]), letter.position

    return admit
