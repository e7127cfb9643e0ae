"""Register Headwater's .avsc files under their subjects, or check (dry run, for CI) that they would register."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import httpx2
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError

from headwater.settings import RegistrySettings
from schemas.catalog import SCHEMA_DIR, CatalogEntry, entries
from schemas.client import registry_client

SR_JSON = "application/vnd.schemaregistry.v1+json"


class RegistryUnreachable(ConnectionError):
    """The registry did not answer at all (as opposed to refusing a schema)."""


@dataclass(frozen=True)
class Outcome:
    entry: CatalogEntry
    ok: bool
    detail: str


def register_all(settings: RegistrySettings, directory: Path = SCHEMA_DIR) -> list[Outcome]:
    client = registry_client(settings)
    outcomes = []
    for entry in entries(directory):
        try:
            schema_id = client.register_schema(entry.subject, Schema(entry.text(), "AVRO"))
            outcomes.append(Outcome(entry, True, f"id {schema_id}"))
        except SchemaRegistryError as exc:
            outcomes.append(Outcome(entry, False, f"{exc.error_message} (error {exc.error_code})"))
        except httpx2.HTTPError as exc:  # the transport confluent-kafka's client uses
            raise RegistryUnreachable(f"registry {settings.url} unreachable: {exc}") from exc
    return outcomes


def check_all(settings: RegistrySettings, directory: Path = SCHEMA_DIR) -> list[Outcome]:
    """Ask the registry whether each schema is valid and compatible with its subject; registers nothing."""
    auth = None
    if settings.basic_auth_user and settings.basic_auth_password:
        auth = (settings.basic_auth_user, settings.basic_auth_password.get_secret_value())
    outcomes = []
    with httpx.Client(base_url=settings.url, auth=auth, timeout=30) as http:
        for entry in entries(directory):
            try:
                response = http.post(
                    f"/compatibility/subjects/{entry.subject}/versions",
                    params={"verbose": "true"},
                    json={"schema": entry.text()},
                    headers={"Content-Type": SR_JSON},
                )
            except httpx.HTTPError as exc:
                raise RegistryUnreachable(f"registry {settings.url} unreachable: {exc}") from exc
            answer = response.json()
            if response.status_code != 200:
                outcomes.append(Outcome(entry, False, f"{answer.get('message')} (error {answer.get('error_code')})"))
            elif answer["is_compatible"]:
                outcomes.append(Outcome(entry, True, "compatible"))
            else:
                outcomes.append(Outcome(entry, False, "incompatible: " + "; ".join(answer.get("messages", []))))
    return outcomes
