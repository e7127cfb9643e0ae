"""PII redaction before a third-party call: every value of the configured kinds becomes a typed placeholder.

The recognizers are presidio-analyzer's own (`EmailRecognizer`, `CreditCardRecognizer`, `IbanRecognizer`,
`IpRecognizer`, `UsSsnRecognizer`, `UrlRecognizer`, `PhoneRecognizer`), but not its `AnalyzerEngine`: the engine runs
every recognizer's patterns over the text one after another and needs a spaCy model (1,400 texts/s here). Instead the
chosen kinds' regex patterns (the recognizers' `PATTERNS`, with the flags each recognizer compiles them with) are
compiled into ONE alternation of named groups, scanned once per text, and each candidate is kept only if the
recognizer's own `validate_result` / `invalidate_result` accepts it (Luhn for cards, the mod-97 checksum and country
format for IBANs, `ipaddress` for IPs, the SSA rules for SSNs), as `PatternRecognizer.analyze` does.

Where presidio is not used as is, and why:
- Phones: `PhoneRecognizer` has no pattern; it runs phonenumbers' `PhoneNumberMatcher` over the whole text once per
  region. Here a cheap phone-shaped candidate joins the alternation and the same matcher (presidio's regions and
  leniency) decides on the candidate alone, stopping at the first region that finds a number.
- E-mails: `EmailRecognizer.validate_result` asks tldextract's default extractor, which downloads the public suffix
  list on first use; the same check (the domain has a public suffix) runs on tldextract's bundled snapshot, so
  redaction never reaches the network.
- Patterns presidio scores below `_MIN_PATTERN_SCORE` without a checksum (the "very weak" SSN shapes such as any
  nine-digit number) only mean something next to context words, which need the NLP engine: left out, so order
  numbers stay intact. The quoted-URL patterns are left out too: their match includes the quotes, and the unquoted
  patterns find the same URL.
- Importing presidio-analyzer imports spaCy (about 3 s and 100 MB here) although no NLP engine is built, so the
  recognizers load when the first `Redactor` is built, never when this module is imported.

Where candidates overlap, the leftmost wins, and at one position the kinds are tried in `_PRIORITY` order (an e-mail
before the URL its domain looks like; an IBAN, card or SSN before the phone its digits look like). A candidate its
recognizer rejects gives way to the other kinds at the same position, and the scan goes on from the next character.

Cost: before its one scan, a text is searched for a few literals (`_TRIGGERS`: an "@", a dot before two letters...)
that say which patterns it cannot match, and those are left out of its scan, so a text without an "@" is never
scanned for e-mails. Each set of patterns is compiled once, when a text first needs it (at most 32 sets; one with
the URL patterns takes about 0.1 s). A phone number costs phonenumbers about 0.1 ms a region, so the verdicts on
the last 4,096 distinct candidates are kept. bench/redact.py measures the whole: over 20,000 texts/s of 200
characters, half with PII, on one core.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from streams.enrich.base import PiiKind

if TYPE_CHECKING:
    import tldextract
    from presidio_analyzer import Pattern, PatternRecognizer
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

PLACEHOLDERS: Final[dict[PiiKind, str]] = {
    "email": "<EMAIL>",
    "phone": "<PHONE>",
    "credit_card": "<CREDIT_CARD>",
    "iban": "<IBAN>",
    "ip_address": "<IP_ADDRESS>",
    "us_ssn": "<US_SSN>",
    "url": "<URL>",
}
_PRIORITY: Final[tuple[PiiKind, ...]] = ("email", "url", "iban", "credit_card", "us_ssn", "ip_address", "phone")
_MIN_PATTERN_SCORE: Final = 0.3
_SKIPPED_PATTERNS: Final = frozenset({"Quoted URL", "Quoted Non-schema URL"})
# Speed guards put in front of presidio's patterns that would otherwise start a costly attempt at every letter:
# each states something the pattern itself requires, so no match is lost. A schema-less URL is a run of [a-z0-9.-]
# holding a dot and two letters of its top-level domain (a match starting inside a run of under 253 characters also
# starts at the run's start), which spares trying the 600 top-level domains after every full stop; an IPv6 address
# has a colon within its first five characters; an e-mail's local part runs without a space up to its "@". That
# one adds RFC 5321's limit of 64 characters to a local part, so that a long run of dots and letters that holds no
# address costs its length, not the square of it.
_GUARDS: Final = {
    "Email (Medium)": r"\b(?=[^\s@]{1,64}@)",
    "Non schema URL": r"(?<![a-z0-9.\-])(?=[a-z0-9.\-]*?[.][a-z]{2})",
    "IPv6": r"(?=[0-9a-f]{0,4}:)",
    "IPv4_embedded": r"(?=[0-9a-f]{1,4}:)",
}
# What every match of a pattern holds, found by a search far cheaper than trying the pattern at every position of
# the text (most start with a literal, which `re` finds fast): a text without it leaves that pattern out of its
# scan. Patterns share triggers so that few distinct scans get compiled (one with the URL patterns takes 0.2 s). A
# pattern not named here is always scanned (the digit shapes: nearly every text has digits).
_TRIGGERS: Final = {
    "Email (Medium)": "@",
    "Standard Url": r"\.[a-zA-Z]{2}",
    "Non schema URL": r"\.[a-zA-Z]{2}",
    "IBAN Generic": r"[A-Z][A-Z]\d\d",
    "IPv4_mapped": r":[0-9A-Fa-f:]",
    "IPv4_embedded": r":[0-9A-Fa-f:]",
    "IPv4": r"\.\d",
    "IPv6": r":[0-9A-Fa-f:]",
}
# Patterns whose matches start with a digit, "+" or "(": scanned last, as one group behind a single look-ahead for
# that first character, which spares `re` trying each of them at every other position (4 times faster here). None
# of them matches where an earlier pattern (e-mail, URL, IBAN, IPv6: letters or a colon) does.
_DIGIT_LED: Final = frozenset({"All Credit Cards (weak)", "SSN5 (medium)", "IPv4", "phone"})
_LEADING_FLAGS = re.compile(r"^\(\?([aiLmsux]+)\)")

# A phone-shaped run for the matcher to judge, taken whole as the matcher takes it (a run of digit groups is one
# candidate, never a tail of one; atomic, so a long run costs no backtracking): an optional +country code, then
# digit groups joined by one space, dot, dash or a parenthesised area code, with 7 to 15 digits in all; a bare digit
# run needs 10 (a national number with its area code), so order numbers and ids do not reach the (costly) matcher.
# Not a date or an IPv4 address, and not inside a word, a decimal number, an amount or a dashed/slashed reference.
_PHONE_CANDIDATE: Final = (
    r"(?<![\w+.,\-/])(?<!\d[ .\-])(?!\d{4}-\d\d-\d\d\b|\d\d?[./\-]\d\d?[./\-]\d{2,4}\b|\d{1,3}(?:\.\d{1,3}){3}\b)(?>"
    r"\+\d{1,3}(?:[ .\-]?\(?\d{1,5}\)?)+"
    r"|\(?\d{1,5}\)?(?:[ .\-]\d{2,8})+"
    r"|\d{10,15}"
    r")(?![\w\-/]|[.,]\d)"
)
_PHONE_DIGITS: Final = range(7, 16)


_Spans = Callable[[re.Match[str], int], list[tuple[int, int]]]
"""Where a match (at group index `offset`) really is PII; empty when its recognizer rejects it."""


@dataclass(frozen=True)
class _Alternative:
    """One pattern of one kind in the combined regex."""

    kind: PiiKind
    group: str
    regex: re.Pattern[str]
    digit_led: bool
    trigger: re.Pattern[str] | None
    """Something every match holds, cheap to look for: a text without it skips the pattern (None: always scanned)."""
    spans: _Spans


@dataclass(frozen=True)
class _Combined:
    regex: re.Pattern[str]
    alternatives: tuple[_Alternative, ...]
    position: dict[str, int]
    """Each alternative's index in `alternatives`, by group name."""


class Redactor:
    """Replaces every value of `kinds` in a text by its placeholder (`<EMAIL>`, `<PHONE>`...)."""

    def __init__(self, kinds: Sequence[PiiKind]) -> None:
        unknown = sorted(set(kinds) - set(PLACEHOLDERS))
        if unknown:
            raise ValueError(f"unknown PII kinds {unknown}; known: {sorted(PLACEHOLDERS)}")
        self.kinds: tuple[PiiKind, ...] = tuple(kind for kind in _PRIORITY if kind in kinds)
        ordered = [alt for kind in self.kinds for alt in _alternatives(kind)]
        self._alternatives = tuple(sorted(ordered, key=lambda alt: alt.digit_led))
        self._triggers = tuple(dict.fromkeys(alt.trigger for alt in self._alternatives if alt.trigger is not None))
        # one combined regex per set of triggers a text holds: at most 2 ** len(triggers), few in practice
        self._combined = functools.lru_cache(maxsize=None)(self._combine)

    def redact(self, text: str) -> str:
        present = 0
        for bit, trigger in enumerate(self._triggers):
            if trigger.search(text):
                present |= 1 << bit
        combined = self._combined(present)
        if combined is None:
            return text
        search = combined.regex.search
        pieces: list[str] = []
        copied = 0
        position = 0
        while (match := search(text, position)) is not None:
            found = _accepted(combined, match)
            if found is None:
                position = match.start() + 1
                continue
            kind, spans = found
            for start, end in spans:
                pieces.append(text[copied:start])
                pieces.append(PLACEHOLDERS[kind])
                copied = end
            position = max(copied, match.start() + 1)
        if not pieces:
            return text
        pieces.append(text[copied:])
        return "".join(pieces)

    def redact_many(self, texts: Iterable[str]) -> list[str]:
        return [self.redact(text) for text in texts]

    def _combine(self, present: int) -> _Combined | None:
        chosen = tuple(
            alt for alt in self._alternatives
            if alt.trigger is None or present >> self._triggers.index(alt.trigger) & 1
        )
        return _compile(chosen) if chosen else None


@functools.lru_cache(maxsize=64)
def _compile(chosen: tuple[_Alternative, ...]) -> _Combined:
    """The one regex that scans a text for `chosen` (shared by every Redactor: compiling the URL patterns is slow)."""
    others = [f"(?P<{alt.group}>{alt.regex.pattern})" for alt in chosen if not alt.digit_led]
    digit_led = [f"(?P<{alt.group}>{alt.regex.pattern})" for alt in chosen if alt.digit_led]
    if digit_led:
        others.append(r"(?=[\d+(])(?:" + "|".join(digit_led) + ")")
    return _Combined(re.compile("|".join(others)), chosen, {alt.group: index for index, alt in enumerate(chosen)})


def _accepted(combined: _Combined, match: re.Match[str]) -> tuple[PiiKind, list[tuple[int, int]]] | None:
    """The kind and spans of the first alternative at this position that its recognizer accepts."""
    group = match.lastgroup
    assert group is not None
    first = combined.position[group]
    matched = combined.alternatives[first]
    spans = matched.spans(match, combined.regex.groupindex[group])
    if spans:
        return matched.kind, spans
    start = match.start()
    for alt in combined.alternatives[first + 1 :]:
        alone = alt.regex.match(match.string, start)
        if alone is not None and (spans := alt.spans(alone, 0)):
            return alt.kind, spans
    return None


@functools.cache
def _alternatives(kind: PiiKind) -> tuple[_Alternative, ...]:
    if kind == "phone":
        candidate = re.compile(_PHONE_CANDIDATE)
        return (_Alternative("phone", "phone_0", candidate, True, None, _phone_spans(_phone_recognizer())),)
    recognizer = _pattern_recognizers()[kind]
    inline = _inline_flags(recognizer.global_regex_flags or 0)
    alternatives: list[_Alternative] = []
    patterns: list[Pattern] = recognizer.patterns  # type: ignore[has-type]  # set in __init__, unannotated
    for pattern in patterns:
        if pattern.name in _SKIPPED_PATTERNS or (pattern.score < _MIN_PATTERN_SCORE and not _validates(recognizer)):
            continue
        source: str = pattern.regex
        leading = _LEADING_FLAGS.match(source)
        flags = inline
        if leading is not None:
            source, flags = source[leading.end() :], "".join(sorted(set(inline + leading[1])))
        source = _GUARDS.get(pattern.name, "") + source
        regex = re.compile(f"(?{flags}:{source})" if flags else source)
        group = f"{kind}_{len(alternatives)}"
        spans = _iban_spans(recognizer) if kind == "iban" else _checked_spans(recognizer, kind)
        trigger = re.compile(_TRIGGERS[pattern.name]) if pattern.name in _TRIGGERS else None
        digit_led = pattern.name in _DIGIT_LED
        alternatives.append(_Alternative(kind, group, regex, digit_led, trigger, spans))
    return tuple(alternatives)


@functools.cache
def _pattern_recognizers() -> dict[PiiKind, PatternRecognizer]:
    # presidio imports spaCy on any import of the package: only here, when a Redactor is first built
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        UrlRecognizer,
        UsSsnRecognizer,
    )

    return {
        "email": EmailRecognizer(),
        "credit_card": CreditCardRecognizer(),
        "iban": IbanRecognizer(),
        "ip_address": IpRecognizer(),
        "us_ssn": UsSsnRecognizer(),
        "url": UrlRecognizer(),
    }


def _phone_recognizer() -> PhoneRecognizer:
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    return PhoneRecognizer()


def _validates(recognizer: PatternRecognizer) -> bool:
    """The recognizer overrides `validate_result` (a checksum), so even its weak patterns are reliable."""
    from presidio_analyzer import PatternRecognizer

    return type(recognizer).validate_result is not PatternRecognizer.validate_result


def _inline_flags(flags: int) -> str:
    return "".join(letter for letter, flag in (("i", re.IGNORECASE), ("m", re.MULTILINE), ("s", re.DOTALL))
                   if flags & flag)


def _accepts(recognizer: PatternRecognizer, kind: PiiKind) -> Callable[[str], bool]:
    """`PatternRecognizer.analyze`'s verdict on one candidate: not validated False, not invalidated True."""
    validate: Callable[[str], bool | None] = (
        _email_has_public_suffix if kind == "email" else recognizer.validate_result
    )
    invalidate = recognizer.invalidate_result

    def accepts(candidate: str) -> bool:
        return validate(candidate) is not False and invalidate(candidate) is not True

    return accepts


def _checked_spans(recognizer: PatternRecognizer, kind: PiiKind) -> _Spans:
    accepts = _accepts(recognizer, kind)

    def spans(match: re.Match[str], offset: int) -> list[tuple[int, int]]:
        start, end = match.span(offset)
        return [(start, end)] if accepts(match.string[start:end]) else []

    return spans


def _iban_spans(recognizer: PatternRecognizer) -> _Spans:
    """As `IbanRecognizer` does: the pattern's groups end the candidate ever earlier (the last group first), so a
    word after an IBAN that looks like one more block does not spoil the checksum."""
    accepts = _accepts(recognizer, "iban")

    def spans(match: re.Match[str], offset: int) -> list[tuple[int, int]]:
        start, whole_end = match.span(offset)
        inner = match.re.groups if offset == 0 else _groups_inside(match, offset)
        for group in range(offset + inner, offset, -1):
            end = match.end(group) if match.end(group) > 0 else whole_end
            if end > start and accepts(match.string[start:end]):
                return [(start, end)]
        return []

    return spans


def _groups_inside(match: re.Match[str], offset: int) -> int:
    """How many groups the alternative at group `offset` holds (they follow it, up to the next named group)."""
    named = sorted(index for index in match.re.groupindex.values() if index > offset)
    return (named[0] if named else match.re.groups + 1) - offset - 1


def _phone_spans(recognizer: PhoneRecognizer) -> _Spans:
    import phonenumbers

    regions: tuple[str, ...] = tuple(recognizer.supported_regions)
    leniency = phonenumbers.Leniency.VALID if recognizer.leniency is None else recognizer.leniency

    @functools.lru_cache(maxsize=4096)
    def numbers_in(candidate: str) -> tuple[tuple[int, int], ...]:
        # a contact's phone recurs across records: the matcher, the costly part, judges each value once; a number
        # written with its +country code reads the same in every region
        for region in regions[:1] if candidate.startswith("+") else regions:
            found = tuple((m.start, m.end) for m in phonenumbers.PhoneNumberMatcher(candidate, region, leniency))
            if found:
                return found
        return ()

    def spans(match: re.Match[str], offset: int) -> list[tuple[int, int]]:
        start, end = match.span(offset)
        candidate = match.string[start:end]
        if sum(character.isdigit() for character in candidate) not in _PHONE_DIGITS:
            return []
        return [(start + found_start, start + found_end) for found_start, found_end in numbers_in(candidate)]

    return spans


@functools.cache
def _suffix_extractor() -> tldextract.TLDExtract:
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def _email_has_public_suffix(candidate: str) -> bool:
    return bool(_suffix_extractor()(candidate).fqdn)
