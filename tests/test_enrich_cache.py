"""The enrichment result cache on a real SQLite file: hits, restarts, two processes on one file, LRU eviction, what the
key depends on, corrupt or unusable files, and 10,000 keys per call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import sys
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pytest
from pydantic import SecretStr

from streams.enrich.cache import DEFAULT_EXCLUDED_OPTIONS, CachedResult, ResultCache, cache_key, cache_keys, cache_path

OPTIONS = {"prompt": "Intent of: {notes}", "temperature": 0.0, "batch_size": 1, "concurrency": 64, "cache": True}


def key(text: str) -> bytes:
    return cache_key("openai", "gpt-4o-mini", OPTIONS, [text])


def result(number: int) -> CachedResult:
    return CachedResult(
        {"intent": f"intent-{number}", "urgency": number / 10}, {"input_tokens": 120, "output_tokens": 8}
    )


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [entry.getMessage() for entry in caplog.records if entry.levelno >= logging.WARNING]


def corrupt_copies(directory: Path) -> list[Path]:
    return list(directory.glob("p.sqlite.corrupt-*"))


async def test_a_stored_result_is_a_hit_and_other_inputs_miss(tmp_path: Path) -> None:
    async with ResultCache(tmp_path / "p.sqlite") as cache:
        assert await cache.get_many([key("a")]) == {}
        await cache.put_many({key("a"): result(1), key("b"): result(2)})
        found = await cache.get_many([key("a"), key("c"), key("a")])
    assert found == {key("a"): result(1)}


async def test_results_and_their_types_survive_reopening_the_file(tmp_path: Path) -> None:
    fields = {
        "score": 0.1 + 0.2,
        "embedding": [0.25, -1.5e-9, 3.0],
        "entities": [{"type": "ORG", "text": "Acme", "offsets": (3, 7)}],
        "missing": None,
        "seen_at": datetime(2026, 12, 1, 11, 40, 5, 123456, tzinfo=timezone(timedelta(hours=2))),
        "naive_at": datetime(2026, 12, 1, 11, 40),
        "due": date(2027, 1, 31),
        "amount": Decimal("1234.5600"),
        "id": UUID("12345678-1234-5678-1234-567812345678"),
        "thumbnail": b"\x00\xffpng",
        "looks_like_a_tag": {"$hw": "datetime", "v": "not a date"},
    }
    path = tmp_path / "restart.sqlite"
    async with ResultCache(path) as cache:
        await cache.put_many({key("a"): CachedResult(fields, {"input_tokens": 120.0, "output_tokens": 8})})
    async with ResultCache(path) as reopened:
        found = await reopened.get_many([key("a")])
    restored = found[key("a")]
    assert restored.billed == {"input_tokens": 120.0, "output_tokens": 8}
    assert restored.fields == {**fields, "entities": [{"type": "ORG", "text": "Acme", "offsets": [3, 7]}]}
    assert restored.fields["seen_at"].utcoffset() == timedelta(hours=2)
    assert type(restored.fields["amount"]) is Decimal and type(restored.fields["thumbnail"]) is bytes


async def share(path: str, mine: str, theirs: str, count: str) -> None:
    """One worker's part of the two-process test: write its own and the shared keys in small transactions, reading
    the other worker's keys between writes, then wait until every key of the other worker is there."""
    total = int(count)
    own = [f"{mine}-{number}".encode() for number in range(total)]
    other = [f"{theirs}-{number}".encode() for number in range(total)]
    shared = [f"shared-{number}".encode() for number in range(total)]
    async with ResultCache(Path(path), max_entries=10_000) as cache:
        for start in range(0, total, 10):
            await cache.put_many(
                {
                    **{own[n]: CachedResult({"n": n, "by": mine}, {"calls": 1}) for n in range(start, start + 10)},
                    **{shared[n]: CachedResult({"n": n}, {"calls": 1}) for n in range(start, start + 10)},
                }
            )
            await cache.get_many(other)
        deadline = time.monotonic() + 30
        while len(found := await cache.get_many(other)) < total:
            assert time.monotonic() < deadline, f"{mine} saw {len(found)} of {total} keys of {theirs}"
            await asyncio.sleep(0.01)
        assert found == {other[n]: CachedResult({"n": n, "by": theirs}, {"calls": 1}) for n in range(total)}
        assert await cache.get_many(shared) == {shared[n]: CachedResult({"n": n}, {"calls": 1}) for n in range(total)}


async def test_two_processes_write_and_read_one_file_at_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "shared.sqlite"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c",
        "import asyncio, sys; from tests.test_enrich_cache import share; asyncio.run(share(*sys.argv[1:]))",
        str(path), "child", "parent", "400",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    try:
        await share(str(path), "parent", "child", "400")
        _, errors = await asyncio.wait_for(child.communicate(), 60)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert child.returncode == 0, errors.decode()
    assert "event=" not in errors.decode()
    assert warnings_of(caplog) == []
    async with ResultCache(path) as cache:
        every = [f"{who}-{number}".encode() for who in ("parent", "child") for number in range(400)]
        assert len(await cache.get_many(every)) == 800


async def test_eviction_drops_the_least_recently_used_in_one_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streams.enrich.cache")
    keys = [key(str(number)) for number in range(120)]
    async with ResultCache(tmp_path / "lru.sqlite", max_entries=100) as cache:
        for start in range(0, 100, 10):
            await cache.put_many({keys[n]: result(n) for n in range(start, start + 10)})
        assert len(await cache.get_many(keys[:10])) == 10  # used again: now the most recent
        await cache.put_many({keys[n]: result(n) for n in range(100, 120)})
        kept = await cache.get_many(keys)
    # 120 entries, bound 100: the 30 least recently used go at once, leaving 90 so the next puts need no eviction.
    assert sorted(kept) == sorted(keys[:10] + keys[40:120])
    assert [entry.getMessage() for entry in caplog.records if "evicted" in entry.getMessage()] == [
        f"event=enrich_cache_evicted path={tmp_path / 'lru.sqlite'} entries=30 kept=90"
    ]


def test_the_key_changes_with_what_decides_the_answer_and_not_with_call_limits() -> None:
    base = cache_key("openai", "gpt-4o-mini", OPTIONS, ["hello", 3])
    assert len(base) == 32
    assert base == cache_key("openai", "gpt-4o-mini", dict(reversed(OPTIONS.items())), ["hello", 3])
    changed = [
        cache_key("anthropic", "gpt-4o-mini", OPTIONS, ["hello", 3]),
        cache_key("openai", "gpt-4o", OPTIONS, ["hello", 3]),
        cache_key("openai", "gpt-4o-mini", {**OPTIONS, "temperature": 0.5}, ["hello", 3]),
        cache_key("openai", "gpt-4o-mini", {**OPTIONS, "redact": ["email"]}, ["hello", 3]),
        cache_key("openai", "gpt-4o-mini", OPTIONS, ["hello!", 3]),
        cache_key("openai", "gpt-4o-mini", OPTIONS, [3, "hello"]),
        cache_key("openai", "gpt-4o-mini", OPTIONS, ["hello", 3.5]),
    ]
    assert len({base, *changed}) == 1 + len(changed)
    limits = {
        "batch_size": 25, "concurrency": 8, "timeout_seconds": 3.0, "max_attempts": 2, "requests_per_minute": 60.0,
        "tokens_per_minute": 1e5, "cache": False, "prices": {"input_tokens": 1e-6}, "region": "eu-west-1",
        "access_key_id": "AKIA", "secret_access_key": "s", "session_token": "t", "api_key": "sk-plain",
    }
    assert set(limits) == DEFAULT_EXCLUDED_OPTIONS
    assert cache_key("openai", "gpt-4o-mini", {**OPTIONS, **limits}, ["hello", 3]) == base
    # The stage decides what to leave out.
    assert cache_key("openai", "gpt-4o-mini", {**OPTIONS, "pack": 5}, ["hello", 3], exclude={"pack"}) != base
    assert cache_key("openai", "gpt-4o-mini", OPTIONS, ["hello", 3], exclude={"temperature"}) == cache_key(
        "openai", "gpt-4o-mini", {**OPTIONS, "temperature": 0.9}, ["hello", 3], exclude={"temperature"}
    )
    # Secrets in the options (a `SecretStr` API key) enter as their masked text: never the value, and a rotated key
    # keeps the cache.
    assert cache_key("openai", "gpt-4o-mini", {"api_key": SecretStr("sk-1")}, ["hello"]) == cache_key(
        "openai", "gpt-4o-mini", {"api_key": SecretStr("sk-2")}, ["hello"]
    )
    # The batch form serializes the options once and gives the same keys.
    assert cache_keys("openai", "gpt-4o-mini", OPTIONS, [["hello", 3], ["hello!", 3]]) == [base, changed[4]]
    image = cache_key("aws_rekognition", "detect-labels", {}, [b"\x89PNG..."])
    assert image != cache_key("aws_rekognition", "detect-labels", {}, [b"\x89PNG.."])
    assert image != cache_key("aws_rekognition", "detect-labels", {}, ["\x89PNG..."])


def test_the_default_path_is_one_file_per_pipeline_under_the_cache_dir(tmp_path: Path) -> None:
    assert cache_path("crm-contacts") == Path.home() / ".cache/headwater/enrich/crm-contacts.sqlite"
    assert cache_path("crm/contacts v2", tmp_path) == tmp_path / "crm_contacts_v2.sqlite"


async def test_a_file_that_is_not_a_database_is_moved_aside_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "p.sqlite"
    path.write_bytes(b"this is not an SQLite file" * 100)
    async with ResultCache(path) as cache:
        assert await cache.get_many([key("a")]) == {}
        await cache.put_many({key("a"): result(1)})
        assert await cache.get_many([key("a")]) == {key("a"): result(1)}
    [moved] = corrupt_copies(tmp_path)
    assert moved.read_bytes() == b"this is not an SQLite file" * 100
    [warning] = warnings_of(caplog)
    assert warning.startswith(f"event=enrich_cache_replaced path={path} moved_to={moved} error=file is not a database")


async def test_a_database_of_another_layout_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "p.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as other:
        other.execute("CREATE TABLE results (k TEXT)")
    async with ResultCache(path) as cache:
        await cache.put_many({key("a"): result(1)})
        assert await cache.get_many([key("a")]) == {key("a"): result(1)}
    [warning] = warnings_of(caplog)
    assert warning.startswith(f"event=enrich_cache_replaced path={path} moved_to=")
    assert warning.endswith("error=no such column: key")
    assert len(corrupt_copies(tmp_path)) == 1


async def test_a_database_with_damaged_pages_is_replaced_and_reads_as_misses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "p.sqlite"
    keys = [key(str(number)) for number in range(3000)]
    async with ResultCache(path) as cache:
        await cache.put_many({k: result(n) for n, k in enumerate(keys)})
    with path.open("r+b") as file:  # keep page 1 (header and schema), overwrite the rest of the B-trees
        size = file.seek(0, os.SEEK_END)
        file.seek(4096)
        file.write(b"\xff" * (size - 4096))
    async with ResultCache(path) as cache:
        assert await cache.get_many(keys) == {}
        await cache.put_many({keys[0]: result(0)})
        assert await cache.get_many(keys) == {keys[0]: result(0)}
    [warning] = warnings_of(caplog)
    assert warning.startswith(f"event=enrich_cache_replaced path={path} moved_to=")
    assert "malformed" in warning or "not a database" in warning
    assert len(corrupt_copies(tmp_path)) == 1


async def test_an_unusable_location_gives_misses_and_a_warning_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "file").write_text("a file where the cache directory should be")
    async with ResultCache(tmp_path / "file" / "p.sqlite") as cache:
        await cache.put_many({key("a"): result(1)})
        assert await cache.get_many([key("a")]) == {}
    [warning] = warnings_of(caplog)
    assert warning.startswith(f"event=enrich_cache_unavailable path={tmp_path / 'file' / 'p.sqlite'} error=")


async def test_a_result_json_cannot_hold_is_skipped_and_the_rest_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with ResultCache(tmp_path / "p.sqlite") as cache:
        await cache.put_many({key("a"): CachedResult({"tags": {"x", "y"}}, {}), key("b"): result(2)})
        assert await cache.get_many([key("a"), key("b")]) == {key("b"): result(2)}
    assert warnings_of(caplog) == ["event=enrich_cache_unstorable_result error=cannot store a set"]


async def test_ten_thousand_keys_in_one_call_each(tmp_path: Path) -> None:
    keys = [key(f"note number {number}") for number in range(10_000)]
    async with ResultCache(tmp_path / "p.sqlite") as cache:
        started = time.perf_counter()
        await cache.put_many({k: result(n) for n, k in enumerate(keys)})
        put_seconds = time.perf_counter() - started
        started = time.perf_counter()
        found = await cache.get_many([*keys, *(key(f"absent {number}") for number in range(100))])
        get_seconds = time.perf_counter() - started
    assert found == {k: result(n) for n, k in enumerate(keys)}
    print(f"\nresult cache, 10,000 keys: put_many {put_seconds * 1000:.0f} ms, get_many {get_seconds * 1000:.0f} ms")

