"""What each registry operation means, on top of the state (reads) and the `_schemas` log (writes).

Reads answer from memory. Writes run one at a time under a lock on the primary: take over the topic if this is a new
term as primary (fence the previous writer, read to the end), decide (id, version, compatibility), append one or more
records, and return once they are committed and read back. A rejected request writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import avro.schema

from schemas.registry import errors, records
from schemas.registry.compatibility import DEFAULT_LEVEL, check_level, incompatibilities, is_transitive
from schemas.registry.parsing import ParsedSchema, check_schema_type, parse, parse_references
from schemas.registry.state import RegistryState, StoredSchema
from schemas.registry.store import SchemaLog

log = logging.getLogger(__name__)

MODES = ("READWRITE", "READONLY", "IMPORT")
DEFAULT_MODE = "READWRITE"
MAX_VERSION = 2**31 - 1
LATEST = -1


@dataclass(frozen=True)
class SchemaRequest:
    """A validated request body carrying a schema."""

    parsed: ParsedSchema
    schema_type: str
    requested_id: int | None
    requested_version: int | None


def parse_version(raw: str, allow_latest: bool = True) -> int:
    """`latest`/-1 -> LATEST, 1..2^31-1 -> itself; anything else is Confluent's 42202."""
    if allow_latest and raw in ("latest", "-1"):
        return LATEST
    try:
        version = int(raw)
    except ValueError:
        raise errors.invalid_version(raw) from None
    if not 1 <= version <= MAX_VERSION:
        raise errors.invalid_version(raw)
    return version


def version_body(value: records.SchemaValue) -> dict[str, Any]:
    body: dict[str, Any] = {"subject": value.subject, "version": value.version, "id": value.id}
    if value.schema_type != "AVRO":
        body["schemaType"] = value.schema_type
    if value.references:
        body["references"] = [ref.to_json() for ref in value.references]
    body["schema"] = value.schema
    return body


class RegistryService:
    def __init__(self, state: RegistryState, log_store: SchemaLog, max_schema_bytes: int) -> None:
        self.state = state
        self.store = log_store
        self.max_schema_bytes = max_schema_bytes
        self._write_lock = asyncio.Lock()
        self._avro_by_id: dict[int, avro.schema.Schema] = {}
        self._role_tasks: set[asyncio.Task[None]] = set()

    # --- the primary's role -----------------------------------------------------------------------------------

    def follow_role(self, primary: bool) -> None:
        """The election's callback: act on the new role at once, so a deposed primary is fenced (and this one
        caught up) before the first write arrives, and a writer no longer needed is closed."""
        self.store.follow_role(primary)
        task = asyncio.get_running_loop().create_task(self._apply_role(), name="registry-role")
        self._role_tasks.add(task)
        task.add_done_callback(self._role_tasks.discard)

    async def _apply_role(self) -> None:
        # Refused when not primary, or a failed takeover the store logged: the next write takes over again.
        async with self._write_lock:
            with suppress(errors.RegistryError):
                await self.store.take_over()

    async def close(self) -> None:
        for task in list(self._role_tasks):
            task.cancel()
        await asyncio.gather(*self._role_tasks, return_exceptions=True)

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        """One write at a time, by the current term's primary only."""
        async with self._write_lock:
            await self.store.take_over()
            yield

    # --- request bodies ---------------------------------------------------------------------------------------

    def schema_request(self, body: Any, new: bool = True) -> SchemaRequest:
        """`new`: the schema is to be registered or checked, so its defaults are validated (not for lookups)."""
        if not isinstance(body, dict):
            raise errors.bad_request("the request body must be a JSON object with a 'schema' field")
        text = body.get("schema")
        if text is not None and not isinstance(text, str):
            raise errors.bad_request("'schema' must be a string holding the schema's JSON")
        if isinstance(text, str) and len(text.encode()) > self.max_schema_bytes:
            raise errors.invalid_schema(
                f"schema is {len(text.encode())} bytes, larger than this registry's limit of {self.max_schema_bytes}"
            )
        schema_type = check_schema_type(body.get("schemaType"))
        references = parse_references(body.get("references"))
        parsed = parse(text, references, self.state.resolve_reference, validate_defaults=new)
        requested_id, requested_version = body.get("id"), body.get("version")
        for name, value in (("id", requested_id), ("version", requested_version)):
            if value is not None and (type(value) is not int or value < 1):
                raise errors.bad_request(f"'{name}' must be a positive integer")
        return SchemaRequest(parsed, schema_type, requested_id, requested_version)

    # --- reads ------------------------------------------------------------------------------------------------

    def subjects(self, deleted: bool, deleted_only: bool, prefix: str | None) -> list[str]:
        names = self.state.subject_names(deleted=deleted, deleted_only=deleted_only)
        return [name for name in names if prefix is None or name.startswith(prefix)]

    def versions(self, subject: str, deleted: bool, deleted_only: bool = False) -> list[int]:
        found = self.state.versions(subject, deleted=deleted or deleted_only)
        if deleted_only:
            found = [value for value in found if value.deleted]
        if not found:
            raise errors.subject_not_found(subject)
        return [value.version for value in found]

    def version(self, subject: str, raw_version: str, deleted: bool = False) -> records.SchemaValue:
        version = parse_version(raw_version)
        visible = self.state.versions(subject, deleted=deleted and version != LATEST)
        if not visible:
            raise errors.subject_not_found(subject)
        if version == LATEST:
            return visible[-1]
        value = self.state.subjects[subject].get(version)
        if value is None or (value.deleted and not deleted):
            raise errors.version_not_found(subject, version)
        return value

    def referenced_by(self, subject: str, raw_version: str) -> list[int]:
        value = self.version(subject, raw_version, deleted=True)
        users = self.state.referenced_by(subject, value.version)
        return sorted({self.state.subjects[s][v].id for s, v in users})

    def schema_by_id(self, schema_id: int) -> StoredSchema:
        stored = self.state.by_id.get(schema_id)
        if stored is None:
            raise errors.schema_not_found(f"Schema {schema_id} not found")
        return stored

    def id_usages(self, schema_id: int, deleted: bool) -> list[tuple[str, int]]:
        stored = self.schema_by_id(schema_id)
        usages = []
        for subject, version in sorted(stored.usages):
            value = self.state.subjects.get(subject, {}).get(version)
            if value is not None and (deleted or not value.deleted):
                usages.append((subject, version))
        return usages

    def lookup(self, subject: str, body: Any, deleted: bool) -> records.SchemaValue:
        request = self.schema_request(body, new=False)
        versions = self.state.versions(subject, deleted=deleted)
        if not versions:
            raise errors.subject_not_found(subject)
        match = self._find(subject, request.parsed, deleted)
        if match is None:
            raise errors.schema_not_found(f"Schema not found under subject '{subject}'")
        return match

    def _find(self, subject: str, parsed: ParsedSchema, deleted: bool) -> records.SchemaValue | None:
        schema_id = self.state.ids_by_identity.get(parsed.identity)
        if schema_id is None:
            return None
        for value in reversed(self.state.versions(subject, deleted=deleted)):
            if value.id == schema_id:
                return value
        return None

    def compatibility_level(self, subject: str | None) -> str:
        return self.state.compatibility(subject) or self.state.compatibility(None) or DEFAULT_LEVEL

    def mode(self, subject: str | None) -> str:
        return self.state.mode(subject) or self.state.mode(None) or DEFAULT_MODE

    def config(self, subject: str | None, default_to_global: bool) -> dict[str, Any]:
        if subject is None:
            return {"compatibilityLevel": self.compatibility_level(None)}
        level = self.state.compatibility(subject)
        if level is None and not default_to_global:
            raise errors.RegistryError(
                404,
                errors.SUBJECT_LEVEL_CONFIG_NOT_FOUND,
                f"Subject '{subject}' does not have subject-level compatibility configured",
            )
        return {"compatibilityLevel": level or self.compatibility_level(None)}

    def mode_of(self, subject: str | None, default_to_global: bool) -> dict[str, Any]:
        if subject is None:
            return {"mode": self.mode(None)}
        mode = self.state.mode(subject)
        if mode is None and not default_to_global:
            raise errors.RegistryError(
                404,
                errors.SUBJECT_LEVEL_MODE_NOT_FOUND,
                f"Subject '{subject}' does not have subject-level mode configured",
            )
        return {"mode": mode or self.mode(None)}

    def test_compatibility(self, subject: str, raw_version: str | None, body: Any) -> list[str]:
        """Reasons the schema in `body` is incompatible (empty when compatible) with one version, or with the
        versions the subject's level asks for when no version is given."""
        request = self.schema_request(body)
        level = self.compatibility_level(subject)
        if raw_version is None:
            return self._incompatibilities(subject, request.parsed, level)
        version = parse_version(raw_version)
        if not self.state.versions(subject):
            if version == LATEST:
                return []
            raise errors.version_not_found(subject, version)
        old = self.version(subject, raw_version)
        return incompatibilities(request.parsed.avro, [(old.version, self._avro(old), old.schema)], level)

    def _incompatibilities(self, subject: str, parsed: ParsedSchema, level: str) -> list[str]:
        live = self.state.versions(subject, deleted=False)
        if level == "NONE" or not live:
            return []
        against = live if is_transitive(level) else live[-1:]
        previous = [(value.version, self._avro(value), value.schema) for value in against]
        return incompatibilities(parsed.avro, previous, level)

    def _avro(self, value: records.SchemaValue) -> avro.schema.Schema:
        cached = self._avro_by_id.get(value.id)
        if cached is None:
            cached = parse(value.schema, value.references, self.state.resolve_reference, validate_defaults=False).avro
            self._avro_by_id[value.id] = cached
        return cached

    # --- writes -----------------------------------------------------------------------------------------------

    def _check_writable(self, subject: str) -> str:
        mode = self.mode(subject)
        if mode == "READONLY":
            raise errors.not_permitted(f"Subject '{subject}' is in read-only mode")
        return mode

    def existing_id(self, subject: str, body: Any) -> int | None:
        """The id when the schema is already live under the subject: registering it again writes nothing."""
        request = self.schema_request(body)
        if request.requested_id is not None or request.requested_version is not None or self.mode(subject) == "IMPORT":
            return None
        match = self._find(subject, request.parsed, deleted=False)
        return None if match is None else match.id

    async def register(self, subject: str, body: Any) -> int:
        request = self.schema_request(body)
        async with self._writing():
            mode = self._check_writable(subject)
            importing = request.requested_id is not None or request.requested_version is not None
            if importing and mode != "IMPORT":
                raise errors.not_permitted(
                    f"Subject '{subject}' is not in IMPORT mode; a schema id or version cannot be given"
                )
            if mode == "IMPORT" and request.requested_id is None:
                raise errors.not_permitted(f"Subject '{subject}' is in IMPORT mode; a schema id must be given")
            existing = self._find(subject, request.parsed, deleted=False)
            if existing is not None and not importing:
                return existing.id
            if mode != "IMPORT":
                reasons = self._incompatibilities(subject, request.parsed, self.compatibility_level(subject))
                if reasons:
                    raise errors.RegistryError(
                        409,
                        errors.INCOMPATIBLE_SCHEMA,
                        f"Schema being registered is incompatible with an earlier schema for subject "
                        f'"{subject}", details: [{", ".join(reasons)}]',
                    )
            schema_id = self._allocate_id(request)
            version = self._allocate_version(subject, request)
            value = records.SchemaValue(
                subject, version, schema_id, request.parsed.text, False, request.schema_type, request.parsed.references
            )
            await self.store.write(records.schema_key(subject, version), value.encode())
            log.info("event=schema_registered subject=%s version=%d id=%d", subject, version, schema_id)
            return schema_id

    def _allocate_id(self, request: SchemaRequest) -> int:
        known = self.state.ids_by_identity.get(request.parsed.identity)
        if request.requested_id is None:
            return known if known is not None else self.state.max_id + 1
        holder = self.state.by_id.get(request.requested_id)
        if holder is not None and known != request.requested_id:
            raise errors.not_permitted(
                f"Overwrite new schema with id {request.requested_id} is not permitted: the id holds another schema"
            )
        return request.requested_id

    def _allocate_version(self, subject: str, request: SchemaRequest) -> int:
        existing = self.state.subjects.get(subject, {})
        if request.requested_version is None:
            return max(existing, default=0) + 1
        if request.requested_version in existing:
            raise errors.not_permitted(f"Version {request.requested_version} of subject '{subject}' already exists")
        return request.requested_version

    async def delete_subject(self, subject: str, permanent: bool) -> list[int]:
        async with self._writing():
            self._check_writable(subject)
            everything = self.state.versions(subject, deleted=True)
            if not everything:
                raise errors.subject_not_found(subject)
            live = [value for value in everything if not value.deleted]
            self._refuse_if_referenced(subject, live if not permanent else everything)
            if permanent:
                if live:
                    raise errors.RegistryError(
                        404,
                        errors.SUBJECT_NOT_SOFT_DELETED,
                        f"Subject '{subject}' was not deleted first before being permanently deleted",
                    )
                for value in everything:
                    await self.store.write(records.schema_key(subject, value.version), None)
                # As in Confluent, a permanently deleted subject leaves no config or mode behind.
                if self.state.compatibility(subject) is not None:
                    await self.store.write(records.config_key(subject), None)
                if self.state.mode(subject) is not None:
                    await self.store.write(records.mode_key(subject), None)
                log.info("event=subject_deleted subject=%s permanent=true versions=%d", subject, len(everything))
                return [value.version for value in everything]
            if not live:
                raise errors.RegistryError(
                    404,
                    errors.SUBJECT_SOFT_DELETED,
                    f"Subject '{subject}' was soft deleted. Set permanent=true to delete permanently",
                )
            await self.store.write(
                records.delete_subject_key(subject), records.delete_subject_value(subject, live[-1].version)
            )
            log.info("event=subject_deleted subject=%s permanent=false versions=%d", subject, len(live))
            return [value.version for value in live]

    async def delete_version(self, subject: str, raw_version: str, permanent: bool) -> int:
        version = parse_version(raw_version)
        async with self._writing():
            self._check_writable(subject)
            value = self.version(subject, raw_version, deleted=version != LATEST)
            if value.deleted and not permanent:
                raise errors.RegistryError(
                    404,
                    errors.VERSION_SOFT_DELETED,
                    f"Subject '{subject}' Version {value.version} was soft deleted. Set permanent=true to delete "
                    "permanently",
                )
            self._refuse_if_referenced(subject, [value])
            if permanent:
                if not value.deleted:
                    raise errors.RegistryError(
                        404,
                        errors.VERSION_NOT_SOFT_DELETED,
                        f"Subject '{subject}' Version {value.version} was not deleted first before being "
                        "permanently deleted",
                    )
                await self.store.write(records.schema_key(subject, value.version), None)
            else:
                deleted = records.SchemaValue(
                    value.subject, value.version, value.id, value.schema, True, value.schema_type, value.references
                )
                await self.store.write(records.schema_key(subject, value.version), deleted.encode())
            log.info("event=version_deleted subject=%s version=%d permanent=%s", subject, value.version, permanent)
            return value.version

    def _refuse_if_referenced(self, subject: str, values: list[records.SchemaValue]) -> None:
        for value in values:
            users = self.state.referenced_by(subject, value.version)
            if users:
                raise errors.RegistryError(
                    422,
                    errors.REFERENCE_EXISTS,
                    f"One or more references exist to the schema {{subject={subject}, version={value.version}}}: "
                    + ", ".join(f"{s} v{v}" for s, v in users),
                )

    async def set_config(self, subject: str | None, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.bad_request("the request body must be a JSON object with a 'compatibility' field")
        level = check_level(body.get("compatibility", body.get("compatibilityLevel")))
        async with self._writing():
            if self.mode(subject) == "READONLY":
                raise errors.not_permitted(f"Subject '{subject or '<global>'}' is in read-only mode")
            await self.store.write(records.config_key(subject), records.config_value(level))
        log.info("event=config_set subject=%s level=%s", subject or "<global>", level)
        return {"compatibility": level}

    async def delete_config(self, subject: str | None) -> dict[str, Any]:
        async with self._writing():
            if subject is not None and self.state.compatibility(subject) is None:
                raise errors.subject_not_found(subject)
            previous = self.config(subject, default_to_global=subject is None)
            await self.store.write(records.config_key(subject), None)
        return previous

    async def set_mode(self, subject: str | None, body: Any, force: bool) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.bad_request("the request body must be a JSON object with a 'mode' field")
        mode = body.get("mode")
        if not isinstance(mode, str) or mode.upper() not in MODES:
            raise errors.invalid_mode(mode)
        mode = mode.upper()
        async with self._writing():
            has_schemas = bool(self.state.subjects) if subject is None else subject in self.state.subjects
            if mode == "IMPORT" and has_schemas and not force:
                raise errors.not_permitted("Cannot import since found existing subjects; use force=true to override")
            await self.store.write(records.mode_key(subject), records.mode_value(mode))
        log.info("event=mode_set subject=%s mode=%s", subject or "<global>", mode)
        return {"mode": mode}

    async def delete_mode(self, subject: str) -> dict[str, Any]:
        async with self._writing():
            if self.state.mode(subject) is None:
                raise errors.subject_not_found(subject)
            previous = self.mode_of(subject, default_to_global=False)
            await self.store.write(records.mode_key(subject), None)
        return previous
