"""PII redaction before a third-party call: each kind is found in realistic text and replaced by its placeholder,
numbers that are not PII stay, only the configured kinds are touched, and the candidates the one-pass scan keeps are
the ones presidio's own recognizers keep."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, get_args

import pytest

from streams.enrich.base import PiiKind
from streams.enrich.redaction import PLACEHOLDERS, Redactor

ROOT = Path(__file__).parent.parent
ALL_KINDS: list[PiiKind] = list(get_args(PiiKind))


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor(ALL_KINDS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Reply to john.smith+sales@mail.example.co.uk by Friday.", "Reply to <EMAIL> by Friday."),
        ("cc: ops@eu-west.billing.acme.io, o'brien@example.com", "cc: <EMAIL>, <EMAIL>"),
        ("Zoë schrieb von zoë@exämple.de — bitte antworten", "Zoë schrieb von <EMAIL> — bitte antworten"),
    ],
)
def test_emails_with_plus_addressing_sub_domains_and_unicode_are_replaced(
    redactor: Redactor, text: str, expected: str
) -> None:
    assert redactor.redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("London office +44 20 7946 0958, ask for Priya", "London office <PHONE>, ask for Priya"),
        ("US desk +1 (415) 555-2671 or (415) 555-2671", "US desk <PHONE> or <PHONE>"),
        ("Berlin: +49 30 901820, national 030 901820", "Berlin: <PHONE>, national <PHONE>"),
        ("Toll free 1-800-555-0199 after 9am", "Toll free <PHONE> after 9am"),
        ("Paris +33 1 42 68 53 00 (standard)", "Paris <PHONE> (standard)"),
    ],
)
def test_international_and_national_phones_are_replaced(redactor: Redactor, text: str, expected: str) -> None:
    assert redactor.redact(text) == expected


def test_visa_and_mastercard_with_spaces_or_dashes_are_replaced_and_a_bad_luhn_is_left(redactor: Redactor) -> None:
    text = "Visa 4111 1111 1111 1111, MC 5500-0000-0000-0004, MC 5555555555554444; typo 4111 1111 1111 1112"
    assert redactor.redact(text) == "Visa <CREDIT_CARD>, MC <CREDIT_CARD>, MC <CREDIT_CARD>; typo 4111 1111 1111 1112"


def test_a_valid_iban_is_replaced_and_one_with_a_wrong_checksum_is_left(redactor: Redactor) -> None:
    text = "Pay DE89 3704 0044 0532 0130 00 or GB82WEST12345698765432, not DE89370400440532013001."
    assert redactor.redact(text) == "Pay <IBAN> or <IBAN>, not DE89370400440532013001."


def test_an_iban_followed_by_a_number_loses_only_the_iban(redactor: Redactor) -> None:
    # presidio's IBAN fallback: the trailing "2" would spoil the checksum if it were taken as part of the IBAN
    assert redactor.redact("I want my deposit in DE89370400440532013000 2 days from today.") == (
        "I want my deposit in <IBAN> 2 days from today."
    )


def test_ipv4_and_ipv6_addresses_are_replaced_and_an_impossible_address_is_left(redactor: Redactor) -> None:
    text = "Login from 192.168.1.10, then 2001:db8::8a2e:370:7334 and fe80::1ff:fe23:4567:890a; bogus 999.1.1.1"
    assert redactor.redact(text) == "Login from <IP_ADDRESS>, then <IP_ADDRESS> and <IP_ADDRESS>; bogus 999.1.1.1"


def test_ssns_are_replaced_unless_the_ssa_never_issues_them(redactor: Redactor) -> None:
    text = "SSN 536-22-8744 on file; 000-12-3456, 666-12-3456 and 536-22.8744 are not SSNs"
    assert redactor.redact(text) == "SSN <US_SSN> on file; 000-12-3456, 666-12-3456 and 536-22.8744 are not SSNs"


def test_urls_with_and_without_a_scheme_are_replaced(redactor: Redactor) -> None:
    text = "Docs at https://portal.example.com/tickets/991?tab=notes and www.example.org/u/7 or acme.io."
    assert redactor.redact(text) == "Docs at <URL> and <URL> or <URL>."


def test_an_email_is_one_placeholder_not_an_email_plus_a_url_for_its_domain(redactor: Redactor) -> None:
    assert redactor.redact("write to anna@mail.example.co.uk") == "write to <EMAIL>"


@pytest.mark.parametrize(
    "text",
    [
        "Order #48213977 shipped 2024-03-15, total $1,249.00, ref ORD-2024-118842.",
        "Invoice 20240315-7781 due 15.03.2025 at 10:30; qty 12 x 300 units, 7.5% discount, v2.3",
        "Ticket 123456789 reopened; call back between 9 and 17, budget 250000 EUR",
        "Renewal notes: usage grew 40% in Q3; two more seats from 2025-01-01.",
    ],
)
def test_numbers_that_are_not_pii_are_left_alone(redactor: Redactor, text: str) -> None:
    assert redactor.redact(text) == text


def test_only_the_configured_kinds_are_replaced() -> None:
    text = "anna@example.com, 4111 1111 1111 1111, +44 20 7946 0958, SSN 536-22-8744, host 10.0.0.7"
    assert Redactor(["email", "credit_card"]).redact(text) == (
        "<EMAIL>, <CREDIT_CARD>, +44 20 7946 0958, SSN 536-22-8744, host 10.0.0.7"
    )
    assert Redactor(["phone", "ip_address"]).redact(text) == (
        "anna@example.com, 4111 1111 1111 1111, <PHONE>, SSN 536-22-8744, host <IP_ADDRESS>"
    )
    assert Redactor([]).redact(text) == text


def test_unicode_text_around_the_values_is_kept(redactor: Redactor) -> None:
    text = "Kunde Jürgen Groß 😊 — E-Mail jürgen@example.de, Tel. +49 30 901820 · Nachricht: 「至急」"
    assert redactor.redact(text) == "Kunde Jürgen Groß 😊 — E-Mail <EMAIL>, Tel. <PHONE> · Nachricht: 「至急」"


def test_a_multi_line_note_keeps_its_lines(redactor: Redactor) -> None:
    note = "Name: Anna Berg\r\nEmail: anna.berg@example.se\nPhone: +46 8 123 456 78\n\tCard: 4111-1111-1111-1111\n"
    assert redactor.redact(note) == "Name: Anna Berg\r\nEmail: <EMAIL>\nPhone: <PHONE>\n\tCard: <CREDIT_CARD>\n"


def test_empty_and_pii_free_texts_come_back_unchanged(redactor: Redactor) -> None:
    assert redactor.redact("") == ""
    plain = "Customer asked about the renewal terms and wants a call back next week."
    assert redactor.redact(plain) == plain


def test_redact_many_keeps_the_order_of_the_texts(redactor: Redactor) -> None:
    texts = ["a@example.com", "", "no pii here", "call +44 20 7946 0958"]
    assert redactor.redact_many(texts) == ["<EMAIL>", "", "no pii here", "call <PHONE>"]


def test_every_kind_has_a_typed_placeholder_and_an_unknown_kind_is_refused() -> None:
    assert sorted(PLACEHOLDERS) == sorted(ALL_KINDS)
    with pytest.raises(ValueError, match="unknown PII kinds \\['passport'\\]"):
        Redactor(["passport"])  # type: ignore[list-item]


ORACLE_TEXTS = [
    "Call +44 20 7946 0958 or (415) 555-2671 tomorrow, not 2024-03-15 or order 48213977.",
    "Berlin 030 901820, Paris +33 1 42 68 53 00, Mumbai +91 22 2778 2222, ref 20240315-7781.",
    "Cards 4111 1111 1111 1111, 5500-0000-0000-0004, 4111-1111-1111-1112 and 3782 822463 10005.",
    "IBANs DE89 3704 0044 0532 0130 00, GB82WEST12345698765432, FR1420041010050500013M02606, DE00123456789.",
    "Hosts 10.1.2.3, 256.1.1.1, 2001:db8::ff00:42:8329, ::ffff:192.0.2.128 and fe80::1%eth0.",
    "Mail j.smith+crm@mail.example.co.uk, ops@acme.io or a@b.invalidtld; e.g. the demo.Customer asked.",
    "See https://portal.example.com/t/9?x=1, www.example.org/u, foo_bar.com and Example.COM/Path today.",
    "SSNs 536-22-8744, 536 22 8744, 000-12-3456, 666-12-3456, 536-22.8744 and 123-45-6789.",
]
# Each kind's recognizer, and the results of it that the one-pass scan leaves out by design (see the module doc).
ORACLE: dict[PiiKind, tuple[str, Callable[[Any], bool]]] = {
    "phone": ("PhoneRecognizer", lambda result: False),
    "credit_card": ("CreditCardRecognizer", lambda result: False),
    "iban": ("IbanRecognizer", lambda result: False),
    "ip_address": ("IpRecognizer", lambda result: False),
    "email": ("EmailRecognizer", lambda result: False),
    "url": ("UrlRecognizer", lambda result: False),
    "us_ssn": ("UsSsnRecognizer", lambda result: result.analysis_explanation.original_score < 0.3),
}


@pytest.mark.parametrize("kind", list(ORACLE))
def test_the_one_pass_scan_keeps_what_presidios_own_recognizer_keeps(
    kind: PiiKind, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tldextract
    from presidio_analyzer import EntityRecognizer, predefined_recognizers
    from presidio_analyzer.predefined_recognizers.generic import email_recognizer

    # presidio's e-mail check would download the public suffix list: it gets the bundled one, as redaction does
    offline = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    monkeypatch.setattr(email_recognizer, "tldextract", SimpleNamespace(extract=offline))
    name, left_out = ORACLE[kind]
    recognizer = getattr(predefined_recognizers, name)()
    ours = Redactor([kind])
    for text in ORACLE_TEXTS:
        found = recognizer.analyze(text, recognizer.supported_entities, None)
        kept = sorted((r.start, r.end) for r in found if r.score > EntityRecognizer.MIN_SCORE and not left_out(r))
        merged: list[list[int]] = []  # presidio reports overlapping matches of one value (a URL with and without
        for start, end in kept:       # its scheme); they are one value
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        expected, copied = [], 0
        for start, end in merged:
            expected += [text[copied:start], PLACEHOLDERS[kind]]
            copied = end
        assert ours.redact(text) == "".join(expected) + text[copied:], text


def test_the_presidio_patterns_named_here_still_exist() -> None:
    """Guards, triggers and skips are keyed by presidio's pattern names: a rename in a presidio release must fail
    here, not silently slow the scan down or bring a skipped pattern back."""
    from streams.enrich import redaction

    recognizers = redaction._pattern_recognizers().values()
    names = {pattern.name for recognizer in recognizers for pattern in recognizer.patterns}  # type: ignore[has-type]
    named = set(redaction._GUARDS) | set(redaction._TRIGGERS) | set(redaction._SKIPPED_PATTERNS)
    assert named <= names, named - names
    assert redaction._DIGIT_LED - {"phone"} <= names


def test_importing_the_module_loads_no_spacy_and_redacting_never_reaches_the_network() -> None:
    script = textwrap.dedent(
        """
        import socket, sys
        import streams.enrich.redaction as redaction
        print("loaded at import:", sorted(m for m in ("spacy", "presidio_analyzer") if m in sys.modules))
        attempts = []
        def refuse(self, address, *args):
            attempts.append(address)
            raise OSError("no network in this test")
        socket.socket.connect = refuse
        print(redaction.Redactor(["email", "url"]).redact("mail anna@example.co.uk or see https://example.org/a"))
        print("connections:", attempts)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [
        "loaded at import: []",
        "mail <EMAIL> or see <URL>",
        "connections: []",
    ], result.stdout + result.stderr[-2000:]
    assert "Public Suffix" not in result.stderr
