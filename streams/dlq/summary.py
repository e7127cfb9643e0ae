"""`headwater dlq summary`: a dead-letter topic's records counted by stage, class and reason and by hour, with
sample keys, and how many a later DLQ replay resolved (an enriched record whose `hw-replay-of` names it)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from headwater.settings import HeadwaterSettings
from streams.dlq.letters import Selection, read
from streams.replay.compare import read_all, text_headers
from streams.replay.run import REPLAY_OF

SAMPLE_KEYS = 3


@dataclass
class Summary:
    total: int = 0
    resolved: int = 0
    by_reason: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    by_hour: Counter[str] = field(default_factory=Counter)
    samples: dict[tuple[str, str, str], list[str]] = field(default_factory=lambda: defaultdict(list))


def summarise(settings: HeadwaterSettings, dlq_topic: str, enriched_topic: str | None) -> Summary:
    resolved_positions = set()
    if enriched_topic is not None:
        for message in read_all(settings, enriched_topic):
            replay_of = text_headers(message).get(REPLAY_OF)
            if replay_of is not None:
                resolved_positions.add(replay_of)
    found = Summary()
    for letter in read(settings, dlq_topic, Selection()):
        found.total += 1
        group = (letter.stage, letter.error_class, letter.reason[:120])
        found.by_reason[group] += 1
        at = letter.at
        found.by_hour[at.strftime("%Y-%m-%d %H:00") if at else "unknown"] += 1
        if len(found.samples[group]) < SAMPLE_KEYS:
            found.samples[group].append((letter.key or b"").decode("utf-8", "replace"))
        if letter.position in resolved_positions:
            found.resolved += 1
    return found
