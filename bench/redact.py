"""Benchmark PII redaction (`streams.enrich.redaction.Redactor`) against the cheapest redaction there is.

Generates 200-character CRM-note texts, half of them with one or two PII values (e-mails, international phones,
cards, IBANs, IPv4/IPv6, SSNs, URLs) and all with the numbers that are not PII (order numbers, dates, amounts), then
on one core, in this process:
  (a) `Redactor(all seven kinds).redact` over every text: one combined pattern scan per text, candidates checked by
      presidio's recognizers;
  (b) baseline: `re.sub` of a single e-mail regex over the same texts.
Each is timed as the best of `--repeat` passes, each over its own texts (after a warm-up on others, so phone numbers
are checked, not answered from the cache), and (a) is printed as texts/s and as a ratio to (b).
Target: (a) >= 20,000 texts/s.

    .venv/bin/python bench/redact.py [--texts 20000] [--repeat 3] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import time
from collections.abc import Callable, Sequence
from typing import get_args

from streams.enrich.base import PiiKind
from streams.enrich.redaction import PLACEHOLDERS, Redactor

LENGTH = 200
TARGET = 20_000
BASELINE_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
NAMES = ["anna", "li.wei", "j.smith", "maria-jose", "o.brien", "sven", "zoë", "priya.k", "tom+crm", "élise"]
DOMAINS = ["example.com", "mail.example.co.uk", "acme.io", "sub.example.de", "kunden.example.at"]
NOTE = (
    "Customer asked about the renewal terms and wants a call back next week. Notes from the account review: usage "
    "grew in the last quarter, the team plans two more seats, billing contact unchanged, follow up after the demo."
)


def luhn_completed(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    total = 0
    for position, digit in enumerate(reversed(body)):
        value = int(digit) * (2 if position % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return body + str((10 - total % 10) % 10)


def iban(rng: random.Random) -> str:
    bban = "37040044" + "".join(rng.choice("0123456789") for _ in range(10))
    check = 98 - int((bban + "DE00").translate({ord(c): str(10 + ord(c) - 65) for c in "DE"})) % 97
    return f"DE{check:02d}{bban}"


def pii_value(rng: random.Random) -> str:
    kind = rng.randrange(8)
    digits = "".join(rng.choice("0123456789") for _ in range(4))
    if kind == 0:
        return f"{rng.choice(NAMES)}@{rng.choice(DOMAINS)}"
    if kind == 1:
        return rng.choice([f"+44 20 7946 {digits}", f"(415) 555-{digits}", f"+49 30 9018{digits}", "030 901820"])
    if kind == 2:
        card = luhn_completed(rng.choice(["4", "51", "55"]), 16, rng)
        return rng.choice([" ", "-"]).join(card[i : i + 4] for i in range(0, 16, 4))
    if kind == 3:
        return iban(rng)
    if kind == 4:
        return rng.choice([f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                           f"2001:db8::{digits}:7334"])
    if kind == 5:
        return f"{rng.randrange(100, 665)}-{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}"
    if kind == 6:
        return f"https://portal.example.com/tickets/{digits}"
    return f"www.example.org/u/{digits}"


def not_pii(rng: random.Random) -> str:
    return rng.choice([
        f"order #{rng.randrange(10_000_000, 99_999_999)}",
        f"ORD-2024-{rng.randrange(100_000, 999_999)}",
        f"due 2025-0{rng.randrange(1, 9)}-1{rng.randrange(10)}",
        f"on {rng.randrange(10, 28)}.03.2025",
        f"total ${rng.randrange(1, 9)},{rng.randrange(100, 999)}.00",
        f"qty {rng.randrange(2, 60)}",
    ])


def make_texts(count: int, seed: int = 7) -> list[str]:
    """`count` texts of `LENGTH` characters; the even ones hold PII."""
    rng = random.Random(seed)
    filler = NOTE.split()
    texts = []
    for index in range(count):
        words = [not_pii(rng), "-"]
        if index % 2 == 0:
            for _ in range(rng.choice([1, 1, 2])):
                words += ["contact", pii_value(rng), "re", not_pii(rng)]
        start = rng.randrange(len(filler))
        while len(" ".join(words)) < LENGTH:
            words.append(filler[start % len(filler)])
            start += 1
        texts.append(" ".join(words)[:LENGTH])
    return texts


def best_rate(function: Callable[[str], str], passes: Sequence[Sequence[str]]) -> float:
    best = float("inf")
    for texts in passes:
        began = time.perf_counter()
        for text in texts:
            function(text)
        best = min(best, time.perf_counter() - began)
    return len(passes[0]) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a few hundred texts: checks the benchmark runs")
    args = parser.parse_args()
    count, repeat = (500, 1) if args.smoke else (args.texts, args.repeat)
    kinds: list[PiiKind] = list(get_args(PiiKind))
    redactor = Redactor(kinds)
    # the warm-up compiles the scans on other texts: each timed pass meets its phone numbers for the first time, so
    # their (costly) phonenumbers check is in the figure, not answered from the cache
    redactor.redact_many(make_texts(count, seed=1))
    passes = [make_texts(count, seed=7 + index) for index in range(repeat)]
    texts = passes[0]

    baseline = best_rate(lambda text: BASELINE_EMAIL.sub("<EMAIL>", text), passes)
    rate = best_rate(redactor.redact, passes)
    redacted = redactor.redact_many(texts)
    replaced = sum(text.count(placeholder) for text in redacted for placeholder in PLACEHOLDERS.values())
    changed = [before != after for before, after in zip(texts, redacted, strict=True)]
    with_pii, without_pii = sum(changed[0::2]), sum(changed[1::2])  # make_texts puts PII in the even texts

    load = os.getloadavg()[0]
    print(f"redaction: {count:,} texts of {LENGTH} chars ({count // 2:,} with PII), one core of {os.cpu_count()}, "
          f"load {load:.2f}, best of {repeat}")
    print(f"{'path':<40} {'texts/s':>10} {'ratio to re.sub':>16}")
    print(f"{'(b) re.sub, one e-mail regex':<40} {baseline:>10,.0f} {1.0:>16.2f}")
    verdict = "met" if rate >= TARGET else "MISSED"
    print(f"{'(a) Redactor.redact, ' + str(len(kinds)) + ' kinds':<40} {rate:>10,.0f} {rate / baseline:>16.2f}   "
          f"(target >= {TARGET:,} texts/s {verdict})")
    print(f"values replaced: {replaced:,}; texts changed: {with_pii:,} of {len(changed[0::2]):,} with PII, "
          f"{without_pii:,} of {len(changed[1::2]):,} without; cost per text {1e6 / rate:.1f} us")


if __name__ == "__main__":
    main()
