"""The registry's in-memory view, rebuilt by applying every `_schemas` record in offset order.

Nothing here is written except by `apply`, so every instance reading the topic holds the same state, and a
restarted one gets back exactly what it had.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from typing import Any

from schemas.registry import errors, records
from schemas.registry.parsing import Reference, parse

log = logging.getLogger(__name__)


@dataclass
class StoredSchema:
    """A schema by global id, with the subject versions using it."""

    id: int
    schema: str
    schema_type: str
    references: tuple[Reference, ...]
    usages: set[tuple[str, int]] = field(default_factory=set)
    response: bytes = b""

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"schema": self.schema}
        if self.schema_type != "AVRO":
            body["schemaType"] = self.schema_type
        if self.references:
            body["references"] = [ref.to_json() for ref in self.references]
        return body


class RegistryState:
    def __init__(self) -> None:
        self.subjects: dict[str, dict[int, records.SchemaValue]] = {}
        self.by_id: dict[int, StoredSchema] = {}
        # Every spelling of a schema maps to one id: the key is the parsed schema's canonical string and references.
        self.ids_by_identity: dict[str, int] = {}
        self.configs: dict[str | None, str] = {}
        self.modes: dict[str | None, str] = {}
        self.max_id = 0
        self.applied = 0

    # --- applying the log -------------------------------------------------------------------------------------

    def apply(self, key_bytes: bytes | None, value_bytes: bytes | None) -> None:
        self.applied += 1
        try:
            key = records.decode_json(key_bytes)
            if key is None:
                raise records.MalformedRecord("record without key")
            value = records.decode_json(value_bytes)
            self._apply(key, value)
        except (records.MalformedRecord, KeyError, TypeError, ValueError) as exc:
            log.warning("event=schemas_record_skipped reason=%s", str(exc).replace(" ", "_")[:200])

    def _apply(self, key: dict[str, Any], value: dict[str, Any] | None) -> None:
        keytype = key.get("keytype")
        subject = key.get("subject")
        if keytype == records.SCHEMA:
            self._apply_schema(str(subject), int(key.get("version", 0)), value)
        elif keytype == records.CONFIG:
            self._apply_setting(self.configs, subject, value, "compatibilityLevel")
        elif keytype == records.MODE:
            self._apply_setting(self.modes, subject, value, "mode")
        elif keytype == records.DELETE_SUBJECT and value is not None:
            self._apply_delete_subject(str(subject), int(value.get("version", 0)))
        elif keytype != records.NOOP:
            log.debug("event=schemas_record_ignored keytype=%s", keytype)

    def _apply_schema(self, subject: str, version: int, value: dict[str, Any] | None) -> None:
        versions = self.subjects.setdefault(subject, {})
        previous = versions.pop(version, None)
        if previous is not None:
            self._release(previous)
        if value is not None:
            stored = records.decode_schema_value(value)
            versions[version] = stored
            self._use(stored)
        if not versions:
            del self.subjects[subject]

    def _use(self, value: records.SchemaValue) -> None:
        self.max_id = max(self.max_id, value.id)
        stored = self.by_id.get(value.id)
        if stored is None:
            stored = StoredSchema(value.id, value.schema, value.schema_type, value.references)
            stored.response = json.dumps(stored.body(), separators=(",", ":")).encode()
            self.by_id[value.id] = stored
            # Records written before schemas were stored canonically are parsed too, so they keep their ids.
            try:
                identity = parse(value.schema, value.references, self.resolve_reference, validate_defaults=False)
            except errors.RegistryError:
                log.warning("event=schemas_record_unparsable id=%d", value.id)
            else:
                self.ids_by_identity.setdefault(identity.identity, value.id)
        stored.usages.add((value.subject, value.version))

    def _release(self, value: records.SchemaValue) -> None:
        stored = self.by_id.get(value.id)
        if stored is None:
            return
        stored.usages.discard((value.subject, value.version))
        if not stored.usages:
            del self.by_id[value.id]
            self.ids_by_identity = {key: id_ for key, id_ in self.ids_by_identity.items() if id_ != value.id}

    def _apply_setting(
        self, settings: dict[str | None, str], subject: Any, value: dict[str, Any] | None, name: str
    ) -> None:
        scope = None if subject is None else str(subject)
        if value is None or not isinstance(value.get(name), str):
            settings.pop(scope, None)
        else:
            settings[scope] = value[name]

    def _apply_delete_subject(self, subject: str, up_to: int) -> None:
        versions = self.subjects.get(subject, {})
        for version, value in list(versions.items()):
            if version <= up_to and not value.deleted:
                versions[version] = replace(value, deleted=True)

    # --- reading ----------------------------------------------------------------------------------------------

    def versions(self, subject: str, deleted: bool = False) -> list[records.SchemaValue]:
        found = self.subjects.get(subject, {})
        return [found[v] for v in sorted(found) if deleted or not found[v].deleted]

    def subject_names(self, deleted: bool = False, deleted_only: bool = False) -> list[str]:
        names = []
        for subject, versions in self.subjects.items():
            live = any(not value.deleted for value in versions.values())
            if (deleted_only and not live) or (not deleted_only and (live or deleted)):
                names.append(subject)
        return sorted(names)

    def resolve_reference(self, subject: str, version: int) -> tuple[str, tuple[Reference, ...]] | None:
        value = self.subjects.get(subject, {}).get(version)
        return None if value is None else (value.schema, value.references)

    def compatibility(self, subject: str | None) -> str | None:
        return self.configs.get(subject)

    def mode(self, subject: str | None) -> str | None:
        return self.modes.get(subject)

    def referenced_by(self, subject: str, version: int) -> list[tuple[str, int]]:
        """The live versions referencing `subject` `version`: soft-deleting a referrer releases its reference."""
        users = []
        for other, versions in self.subjects.items():
            for value in versions.values():
                if value.deleted:
                    continue
                if any(ref.subject == subject and ref.version == version for ref in value.references):
                    users.append((other, value.version))
        return users
