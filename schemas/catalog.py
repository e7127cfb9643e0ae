"""Headwater's own Avro schemas (`schemas/avro/<domain>/<entity>[_enriched].avsc`) and the subjects they live under.

A file `crm/contact.avsc` describes the records on topic `crm.contacts.raw` (subject `crm.contacts.raw-value`,
TopicNameStrategy); `crm/contact_enriched.avsc` those on `crm.contacts.enriched` (`crm.contacts.enriched-value`).
Topic entity names are plural, as in ARCHITECTURE.md (`erp.orders.raw`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).parent / "avro"
ENRICHED_SUFFIX = "_enriched"


def plural(entity: str) -> str:
    if entity.endswith("y") and entity[-2:-1] not in "aeiou":
        return entity[:-1] + "ies"
    return entity + "s"


@dataclass(frozen=True)
class CatalogEntry:
    """One .avsc file and where it is registered."""

    name: str
    path: Path

    @property
    def domain(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def enriched(self) -> bool:
        return self.name.endswith(ENRICHED_SUFFIX)

    @property
    def entity(self) -> str:
        base = self.name.split("/", 1)[1]
        return base.removesuffix(ENRICHED_SUFFIX)

    @property
    def topic(self) -> str:
        stage = "enriched" if self.enriched else "raw"
        return f"{self.domain}.{plural(self.entity)}.{stage}"

    @property
    def subject(self) -> str:
        return f"{self.topic}-value"

    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    def load(self) -> dict[str, Any]:
        schema: dict[str, Any] = json.loads(self.text())
        return schema


def entries(directory: Path = SCHEMA_DIR) -> list[CatalogEntry]:
    """Every `<domain>/<name>.avsc` under the directory, sorted by name (input schemas before enriched ones)."""
    found = [
        CatalogEntry(name=f"{path.parent.name}/{path.stem}", path=path)
        for path in directory.glob("*/*.avsc")
        if path.is_file()
    ]
    return sorted(found, key=lambda entry: (entry.domain, entry.entity, entry.enriched))


def entry(name: str, directory: Path = SCHEMA_DIR) -> CatalogEntry:
    """The entry for `crm/contact`, `crm/contact_enriched`, ... (a `.` may stand for the `/`)."""
    normalised = name.replace(".", "/", 1).removesuffix(".avsc")
    path = directory / f"{normalised}.avsc"
    if not path.is_file():
        known = ", ".join(item.name for item in entries(directory))
        raise KeyError(f"no schema named {name!r} under {directory} (known: {known})")
    return CatalogEntry(name=normalised, path=path)


def load_schema(name: str, directory: Path = SCHEMA_DIR) -> dict[str, Any]:
    return entry(name, directory).load()


def subject_for(name: str, directory: Path = SCHEMA_DIR) -> str:
    return entry(name, directory).subject
