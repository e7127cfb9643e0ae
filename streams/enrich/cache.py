"""The enrichment result cache: answers keyed by a hash of (provider, model, options, inputs), kept in one SQLite file
per pipeline that survives a restart and is shared by the workers of a machine (several processes on one file).

- `cache_key` hashes a canonical JSON (sorted keys) with blake2b; options that only limit how calls are made
  (`DEFAULT_EXCLUDED_OPTIONS`) are left out, so changing them keeps the cache. `cache_keys` does a batch with the
  options serialized once. Bytes inputs enter by their hash; a config type JSON lacks (`SecretStr`, an enum) by its
  type and text, so a secret's value never enters and rotating it keeps the cache.
- `ResultCache` runs every SQLite call on its own single thread (never on the event loop); WAL mode lets readers
  and one writer of other processes proceed together, and `busy_timeout` plus a bounded wait ride out the moments
  another process holds the write lock.
- Bounded: past `max_entries`, the least recently used tenth is evicted in one statement, so eviction is rare.
- A cache problem never stops a pipeline: a corrupt or unreadable file is moved aside (`<name>.corrupt-<time>`) with
  one warning and a fresh file takes its place; a call that still fails is a miss (get) or is dropped (put).

Values are JSON of the fields and billed quantities. JSON lacks some types Avro records carry, so those are stored as
tagged objects and read back as the same type: `{"$hw": "datetime" | "date" | "time", "v": iso}`, `{"$hw":
"decimal" | "uuid", "v": str}`, `{"$hw": "bytes", "v": base64}`; a dict that itself has a `$hw` key is stored as
`{"$hw": "dict", "v": [[key, value], ...]}` so it cannot be mistaken for a tag. Tuples are stored as lists and
dict keys as strings, as JSON does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as time_of_day
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from uuid import UUID

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_EXCLUDED_OPTIONS: frozenset[str] = frozenset(
    {
        "batch_size",
        "concurrency",
        "timeout_seconds",
        "max_attempts",
        "requests_per_minute",
        "tokens_per_minute",
        "cache",
        "prices",
        "region",
        "access_key_id",
        "secret_access_key",
        "session_token",
        "api_key",
    }
)
"""Options that change how calls are made or whose credentials pay, not what they answer."""

DEFAULT_CACHE_DIR = Path("~/.cache/headwater/enrich")
_TAG = "$hw"
_TAG_MARK = f'"{_TAG}"'
_SCHEMA = "CREATE TABLE IF NOT EXISTS results (key BLOB PRIMARY KEY, value BLOB NOT NULL, last_used INTEGER NOT NULL)"
_REPLACE_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
# Opening also fails on a file we may not read or write, or whose `results` table is not ours (SQLITE_ERROR from the
# fixed statements of `_connect`); a full disk or an I/O error is no reason to drop the cache.
_REPLACE_AT_OPEN_CODES = {
    *_REPLACE_CODES, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_ERROR
}
_REOPEN_AFTER_SECONDS = 60.0
_BUSY_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


@dataclass(frozen=True)
class CachedResult:
    """A provider's answer for one record: the fields it wrote and what the original call was billed (so a report
    can say what the hit saved)."""

    fields: dict[str, Any]
    billed: Mapping[str, float]


def cache_path(pipeline: str, cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """`<cache_dir>/<pipeline>.sqlite`, the pipeline name made safe as a file name."""
    return cache_dir.expanduser() / f"{re.sub(r'[^A-Za-z0-9._-]', '_', pipeline)}.sqlite"


def cache_key(
    provider: str,
    model: str,
    options: Mapping[str, Any],
    inputs: Sequence[Any],
    exclude: Collection[str] = DEFAULT_EXCLUDED_OPTIONS,
) -> bytes:
    """A 32-byte blake2b hash of what decides an answer; `inputs` are the values the provider reads (after the
    stage bounded and redacted them). Bytes inputs (images, documents) enter by their own hash."""
    return cache_keys(provider, model, options, [inputs], exclude)[0]


def cache_keys(
    provider: str,
    model: str,
    options: Mapping[str, Any],
    batch_inputs: Iterable[Sequence[Any]],
    exclude: Collection[str] = DEFAULT_EXCLUDED_OPTIONS,
) -> list[bytes]:
    """`cache_key` of each record's inputs, the options (a prompt, a JSON schema) serialized and hashed once."""
    answer_options = {name: value for name, value in options.items() if name not in exclude}
    # The prefix is one JSON object, so where it ends is unambiguous and the concatenation needs no separator.
    prefix = hashlib.blake2b(digest_size=32)
    prefix.update(_dumps({"provider": provider, "model": model, "options": answer_options}, _key_leaf).encode())
    keys = []
    for inputs in batch_inputs:
        digest = prefix.copy()
        digest.update(_dumps(list(inputs), _key_leaf).encode())
        keys.append(digest.digest())
    return keys


Leaf = Callable[[Any], dict[str, str]]


def _key_leaf(value: Any) -> dict[str, str]:
    """A value JSON lacks, as it enters a key: bytes by their hash; a type no record holds (a config's `SecretStr`,
    an enum) by its type and text, which is stable across runs and never a secret's value."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {_TAG: "bytes-blake2b", "v": hashlib.blake2b(value, digest_size=32).hexdigest()}
    try:
        return _value_leaf(value)
    except TypeError:
        return {_TAG: type(value).__qualname__, "v": str(value)}


def _dumps(value: Any, leaf: Leaf) -> str:
    """Canonical JSON (sorted keys) of `value` with the types JSON lacks tagged (see the module's docstring)."""
    text = json.dumps(value, default=leaf, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if _TAG_MARK in text:  # a tag, or a dict that has the tag's key: walk the value to escape such dicts
        text = json.dumps(_tagged(value, leaf), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text


def _tagged(value: Any, leaf: Leaf) -> Any:
    if isinstance(value, dict):
        if _TAG in value:
            return {_TAG: "dict", "v": [[name, _tagged(item, leaf)] for name, item in value.items()]}
        return {name: _tagged(item, leaf) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_tagged(item, leaf) for item in value]
    if value is None or isinstance(value, str | int | float):
        return value
    return leaf(value)


def _value_leaf(value: Any) -> dict[str, str]:
    """A value JSON lacks, as it is stored (and read back by `_untagged`)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {_TAG: "bytes", "v": base64.b64encode(value).decode()}
    if isinstance(value, datetime):  # before date: a datetime is a date
        return {_TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, date):
        return {_TAG: "date", "v": value.isoformat()}
    if isinstance(value, time_of_day):
        return {_TAG: "time", "v": value.isoformat()}
    if isinstance(value, Decimal):
        return {_TAG: "decimal", "v": str(value)}
    if isinstance(value, UUID):
        return {_TAG: "uuid", "v": str(value)}
    raise TypeError(f"cannot store a {type(value).__name__}")


_UNTAG: dict[str, Callable[[Any], Any]] = {
    "dict": lambda pairs: {name: item for name, item in pairs},
    "bytes": base64.b64decode,
    "datetime": datetime.fromisoformat,
    "date": date.fromisoformat,
    "time": time_of_day.fromisoformat,
    "decimal": Decimal,
    "uuid": UUID,
}


def _untagged(obj: dict[str, Any]) -> Any:
    if _TAG in obj:
        return _UNTAG[obj[_TAG]](obj["v"])
    return obj


def _encode(result: CachedResult) -> bytes:
    return _dumps({"fields": result.fields, "billed": dict(result.billed)}, _value_leaf).encode()


def _decode(value: bytes) -> CachedResult:
    # Most values hold no tag: plain parsing is about twice as fast as parsing through the hook.
    stored = json.loads(value, object_hook=_untagged) if _TAG_MARK.encode() in value else json.loads(value)
    return CachedResult(fields=stored["fields"], billed=stored["billed"])


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _code(exc: sqlite3.Error) -> int:
    """The primary SQLite result code (extended codes carry it in the low byte)."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF


class ResultCache:
    """A bounded, content-addressed cache of provider answers in one SQLite file (see the module docstring)."""

    def __init__(self, path: Path, max_entries: int = 1_000_000, *, busy_timeout_seconds: float = 10.0) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.path = path
        self.max_entries = max_entries
        self._busy_timeout = busy_timeout_seconds
        self._evict_to = max_entries - max(1, max_entries // 10)
        self._recount_every = max(1, max_entries // 100)
        self._conn: sqlite3.Connection | None = None
        self._opened_inode: int | None = None
        self._counted = 0
        self._inserted_since_count = 0
        self._last_stamp = 0
        self._warned: set[str] = set()
        self._reopen_at = 0.0
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hw-enrich-cache")
        self._executor.submit(self._open)

    async def __aenter__(self) -> ResultCache:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    async def get_many(self, keys: Iterable[bytes]) -> dict[bytes, CachedResult]:
        """The cached results of those keys that have one; marks them recently used (after answering)."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        found = await self._run(self._get, wanted)
        if found:
            self._executor.submit(self._guarded, "touch", None, self._touch, list(found))
        return found

    async def put_many(self, items: Mapping[bytes, CachedResult]) -> None:
        """Store results in one transaction, evicting the least recently used when over `max_entries`."""
        if items:
            await self._run(self._put, dict(items))

    async def close(self) -> None:
        """Wait for the calls in progress, then close the file (again: nothing to do)."""
        if not self._closed:
            self._closed = True
            await self._run(self._close_connection)
            self._executor.shutdown(wait=False)

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    # Everything below runs on the cache's own thread.

    def _warn_once(self, kind: str, message: str, *args: Any) -> None:
        level = logging.DEBUG if kind in self._warned else logging.WARNING
        self._warned.add(kind)
        log.log(level, message, *args)

    def _stamp(self) -> int:
        """Microseconds since the epoch, never the same twice in this process, so LRU order between calls is exact."""
        self._last_stamp = max(time.time_ns() // 1000, self._last_stamp + 1)
        return self._last_stamp

    def _open(self) -> None:
        try:
            self._connect()
        except sqlite3.DatabaseError as exc:
            if _code(exc) in _REPLACE_AT_OPEN_CODES:
                self._replace(exc)
            else:
                self._unavailable(exc)
        except OSError as exc:
            self._unavailable(exc)

    def _unavailable(self, exc: Exception, after: Exception | None = None) -> None:
        """Work without the file for a while (gets miss, puts are dropped), then try opening it again."""
        self._reopen_at = time.monotonic() + _REOPEN_AFTER_SECONDS
        self._warn_once(
            "open", "event=enrich_cache_unavailable path=%s error=%s after=%s retry_in_s=%d",
            self.path, exc, after, _REOPEN_AFTER_SECONDS,
        )

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._opened_inode = _inode(self.path)
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        try:
            if self._opened_inode is None:  # connect created it
                self._opened_inode = _inode(self.path)
            # WAL lets other processes read while one writes; NORMAL sync may lose the last answers on power loss,
            # which a cache can afford; a larger page cache keeps lookups off the disk.
            self._with_busy_wait(conn, conn.execute, "PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA cache_size=-32768")
            self._with_busy_wait(conn, conn.execute, _SCHEMA)
            conn.execute("SELECT key, value, last_used FROM results LIMIT 0")
            self._counted = conn.execute("SELECT count(*) FROM results").fetchone()[0]
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._inserted_since_count = 0

    def _replace(self, exc: sqlite3.Error) -> None:
        """Move the corrupt or unreadable file (and its WAL) aside and start a fresh one in its place."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        moved_to = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}")
        # Another worker on this file may have moved it already: then the file at the path is its fresh one.
        moving = self._opened_inode is not None and _inode(self.path) == self._opened_inode and self.path.is_file()
        try:
            if moving:
                for suffix in ("", "-wal", "-shm"):
                    source = Path(f"{self.path}{suffix}")
                    if source.exists():
                        source.replace(Path(f"{moved_to}{suffix}"))
            self._connect()
        except (sqlite3.Error, OSError) as again:
            self._unavailable(again, after=exc)
            return
        if moving:
            log.warning("event=enrich_cache_replaced path=%s moved_to=%s error=%s", self.path, moved_to, exc)
        else:
            log.info("event=enrich_cache_reopened path=%s reason=replaced_by_another_worker", self.path)

    def _with_busy_wait(self, conn: sqlite3.Connection, function: Callable[..., T], *args: Any) -> T:
        """`function`, rolled back and tried again while SQLite answers SQLITE_BUSY (another process writing past
        `busy_timeout`, or WAL recovery and a moved snapshot, where SQLite does not wait itself) until
        `busy_timeout_seconds`."""
        deadline = time.monotonic() + self._busy_timeout
        pause = 0.001
        while True:
            try:
                return function(*args)
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    # A failed rollback leaves nothing to undo that the next statement or a fresh file would keep.
                    with contextlib.suppress(sqlite3.Error):
                        conn.rollback()
                if _code(exc) not in _BUSY_CODES or time.monotonic() + pause > deadline:
                    raise
            # Sleeping blocks only the cache's own thread, which has nothing else to do until this succeeds.
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def _guarded(self, operation: str, fallback: T, function: Callable[..., T], *args: Any, retry: bool = True) -> T:
        """`function` on the open file; a problem is logged and gives `fallback`, except that a corrupt file is
        replaced and the call tried once on the fresh one."""
        if self._conn is None and time.monotonic() >= self._reopen_at:
            self._open()
        if self._conn is None:
            return fallback
        try:
            return self._with_busy_wait(self._conn, function, *args)
        except sqlite3.DatabaseError as exc:
            if retry and _code(exc) in _REPLACE_CODES:
                self._replace(exc)
                return self._guarded(operation, fallback, function, *args, retry=False)
            self._warn_once(operation, "event=enrich_cache_failed operation=%s error=%s", operation, exc)
            return fallback

    def _chunks(self, keys: Sequence[bytes], reserved: int = 0) -> Iterable[Sequence[bytes]]:
        assert self._conn is not None
        size = self._conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) - reserved
        return (keys[start : start + size] for start in range(0, len(keys), size))

    def _get(self, keys: list[bytes]) -> dict[bytes, CachedResult]:
        return self._guarded("get", {}, self._select, keys)

    def _select(self, keys: list[bytes]) -> dict[bytes, CachedResult]:
        assert self._conn is not None
        found: dict[bytes, CachedResult] = {}
        for chunk in self._chunks(keys):
            marks = ",".join("?" * len(chunk))
            for key, value in self._conn.execute(f"SELECT key, value FROM results WHERE key IN ({marks})", chunk):
                try:
                    found[key] = _decode(value)
                except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
                    self._warn_once("decode", "event=enrich_cache_unreadable_entry error=%s", exc)
        return found

    def _touch(self, keys: list[bytes]) -> None:
        assert self._conn is not None
        stamp = self._stamp()
        self._conn.execute("BEGIN IMMEDIATE")
        for chunk in self._chunks(keys, reserved=1):
            marks = ",".join("?" * len(chunk))
            self._conn.execute(f"UPDATE results SET last_used = ? WHERE key IN ({marks})", (stamp, *chunk))
        self._conn.execute("COMMIT")

    def _put(self, items: dict[bytes, CachedResult]) -> None:
        rows = []
        for key, result in items.items():
            try:
                rows.append((key, _encode(result)))
            except (TypeError, ValueError) as exc:
                self._warn_once("encode", "event=enrich_cache_unstorable_result error=%s", exc)
        if rows:
            self._guarded("put", None, self._upsert, rows)

    def _upsert(self, rows: list[tuple[bytes, bytes]]) -> None:
        assert self._conn is not None
        stamp = self._stamp()
        self._conn.execute("BEGIN IMMEDIATE")
        before = self._conn.total_changes
        self._conn.executemany(
            "INSERT INTO results (key, value, last_used) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, last_used = excluded.last_used",
            [(key, value, stamp) for key, value in rows],
        )
        # An upsert counts as one change either way, so this overestimates the new rows: it only brings the next
        # real count (and any eviction) forward.
        self._inserted_since_count += self._conn.total_changes - before
        self._evict_if_over()
        self._conn.execute("COMMIT")

    def _evict_if_over(self) -> None:
        """Count the rows (every process adds some) when ours may have passed the bound or often enough to notice
        the others' inserts; past `max_entries`, delete the least recently used down to 90 % of it."""
        assert self._conn is not None
        if (
            self._counted + self._inserted_since_count <= self.max_entries
            and self._inserted_since_count < self._recount_every
        ):
            return
        self._counted = self._conn.execute("SELECT count(*) FROM results").fetchone()[0]
        self._inserted_since_count = 0
        if self._counted <= self.max_entries:
            return
        excess = self._counted - self._evict_to
        self._conn.execute(
            "DELETE FROM results WHERE rowid IN (SELECT rowid FROM results ORDER BY last_used LIMIT ?)", (excess,)
        )
        log.info("event=enrich_cache_evicted path=%s entries=%d kept=%d", self.path, excess, self._evict_to)
        self._counted = self._evict_to

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


__all__ = ["DEFAULT_EXCLUDED_OPTIONS", "CachedResult", "ResultCache", "cache_key", "cache_keys", "cache_path"]
