"""A realistic, messy sample of CRM contacts and ERP orders for `headwater up` and the tests, deterministic per seed.

Mess on purpose: unicode names, blank last names, missing or malformed e-mails, malformed phones, countries written
every way, negative amounts, unknown currencies, and a few messages that are not Avro at all.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

FIRST_NAMES = ["Ana", "Björn", "Chloé", "Dmitri", "Émile", "Fatima", "Grzegorz", "Hiroshi", "Inés", "Jürgen",
               "Kofi", "Łucja", "Mei", "Nuño", "Olúwaseun", "Priya", "Quentin", "Ragnhild", "Søren", "Zoë"]
LAST_NAMES = ["García", "Müller", "O'Brien", "Nguyễn", "Kowalski", "Søndergaard", "Dubois", "Rossi", "Tanaka",
              "Smith", "Ivanov", "Öztürk", "da Silva", "Çelik", "van der Berg", "Åberg", "李", "Papadopoulos"]
COUNTRIES = ["US", "usa", "United States", "DE", "Germany", "Deutschland", "FR", "France", "GB", "UK", "ES", "Spain",
             "NL", "Nederland", "SE", "JP", "Japan", "BR", "Brasil", "Atlantis", "", None]
PHONES = {"US": "(415) 555-{:04d}", "DE": "030 1234{:04d}", "FR": "01 42 68 {:02d} {:02d}", "GB": "020 7946 {:04d}"}
NOTES = [
    "Customer was very happy with the onboarding and wants to expand the contract next quarter.",
    "Angry about the late delivery, threatened to cancel the order unless we refund shipping.",
    "Der Kunde ist sehr zufrieden mit dem Service und möchte nächste Woche einen Termin.",
    "Le client est mécontent du délai de livraison et demande un geste commercial.",
    "El cliente quiere una demostración del nuevo producto la próxima semana.",
    "Asked for the invoice to be re-sent with the correct VAT number.",
    "Great call! They love the dashboard and will recommend us to their partners.",
    "Klant vraagt om een offerte voor 200 extra licenties.",
    "",
    None,
]
STATUSES = ["open", "Confirmed", "SHIPPED", "invoiced", "cancelled", "on-hold"]
CURRENCIES = ["EUR", "USD", "GBP", "JPY", "KWD", "eur", "XXY"]
UNDECODABLE = [b"not avro at all", b"{\"json\": true}", b"\x00\x00", b""]


@dataclass(frozen=True)
class SampleRecord:
    """One sample event: a record for `subject`, or raw bytes that are not Avro."""

    topic: str
    key: str
    record: dict[str, Any] | None
    raw: bytes | None = None


def _email(rng: random.Random, first: str, last: str) -> str | None:
    roll = rng.random()
    if roll < 0.08:
        return None
    if roll < 0.12:
        return f"{first}.{last}-at-example.com"
    local = "".join(ch for ch in f"{first}.{last}".lower() if ch.isascii() and (ch.isalnum() or ch == "."))
    return f"  {local or 'contact'}@Example.COM " if roll < 0.3 else f"{local or 'contact'}@example.com"


def _phone(rng: random.Random, country: str | None) -> str | None:
    roll = rng.random()
    if roll < 0.07:
        return None
    if roll < 0.13:
        return rng.choice(["12", "call me", "+00 000", "555-CALL-NOW"])
    pattern = PHONES.get(country or "US", "+1 " + PHONES["US"])
    digits = rng.randrange(10_000)
    return pattern.format(digits // 100, digits % 100) if pattern.count("{") == 2 else pattern.format(digits)


def _address(rng: random.Random) -> dict[str, Any] | None:
    if rng.random() < 0.1:
        return None
    city = rng.choice(["Berlin", "Paris", "Austin", "Tōkyō"])
    return {"street": f"{rng.randrange(1, 300)} Main Street", "city": city,
            "postal_code": f"{rng.randrange(10000, 99999)}", "region": None, "country": rng.choice(COUNTRIES)}


def _country_hint(address: dict[str, Any] | None) -> str | None:
    value = (address or {}).get("country") or ""
    return {"usa": "US", "united states": "US", "germany": "DE", "deutschland": "DE", "france": "FR", "uk": "GB"}.get(
        value.lower(), value.upper() if len(value) == 2 else None
    )


def contact(rng: random.Random, index: int, now_ms: int) -> dict[str, Any]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    address = _address(rng)
    created = now_ms - rng.randrange(86_400_000 * 365)
    return {
        "contact_id": f"C{index:08d}",
        "source_system": rng.choice(["salesforce", "hubspot"]),
        "first_name": f"  {first} " if rng.random() < 0.1 else first,
        "last_name": "" if rng.random() < 0.01 else last,
        "email": _email(rng, first, last),
        "phone": _phone(rng, _country_hint(address)),
        "account_id": f"A{rng.randrange(5000):05d}",
        "job_title": rng.choice(["CFO", "Head of Data", "Buyer", None]),
        "mailing_address": address,
        "lifecycle_stage": rng.choice(["Lead", "CUSTOMER", "opportunity", None]),
        "notes": rng.choice(NOTES),
        "created_at": created,
        "updated_at": created + rng.randrange(86_400_000),
    }


def order(rng: random.Random, index: int, now_ms: int) -> dict[str, Any]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    lines: list[dict[str, Any]] = [
        {"line_number": n + 1, "sku": f"SKU-{rng.randrange(1000):04d}", "description": rng.choice(["Widget", None]),
         "quantity": float(rng.randrange(1, 20)), "unit_price": round(rng.uniform(1, 500), 2)}
        for n in range(rng.randrange(1, 4))
    ]
    amount = round(sum(line["quantity"] * line["unit_price"] for line in lines), 2)
    if rng.random() < 0.02:
        amount = -amount
    address = _address(rng)
    ordered = now_ms - rng.randrange(86_400_000 * 30)
    return {
        "order_number": f"SO-{index:08d}",
        "source_system": "sap",
        "customer_id": f"K{rng.randrange(20000):06d}",
        "customer_name": f"{first} {last}",
        "customer_email": _email(rng, first, last),
        "customer_phone": _phone(rng, _country_hint(address)),
        "status": rng.choice(STATUSES),
        "ordered_at": ordered,
        "lines": lines,
        "amount": amount,
        "tax_amount": round(amount * 0.19, 2),
        "currency": "XXY" if rng.random() < 0.005 else rng.choice(CURRENCIES[:-1]),
        "shipping_address": address,
        "notes": rng.choice(NOTES),
        "created_at": ordered,
        "updated_at": ordered + rng.randrange(3_600_000),
    }


def generate(
    count: int, seed: int = 7, contacts_topic: str = "crm.contacts.raw", orders_topic: str = "erp.orders.raw",
    undecodable_every: int = 2500,
) -> Iterator[SampleRecord]:
    """`count` events, about half contacts and half orders; one in `undecodable_every` is not Avro."""
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    for index in range(count):
        topic = contacts_topic if index % 2 == 0 else orders_topic
        if undecodable_every and index % undecodable_every == undecodable_every - 1:
            bad_topic = contacts_topic if (index // undecodable_every) % 2 == 0 else orders_topic
            yield SampleRecord(bad_topic, f"bad-{index}", None, rng.choice(UNDECODABLE))
        elif topic == contacts_topic:
            record = contact(rng, index, now_ms)
            yield SampleRecord(topic, record["contact_id"], record)
        else:
            record = order(rng, index, now_ms)
            yield SampleRecord(topic, record["order_number"], record)
