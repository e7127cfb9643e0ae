"""Uniqueness judged per record against the stream: by column or by record key, within the horizon, and a replayed
record (same `hw-source`) is not its own duplicate. (Across batches and restarts on Kafka: test_quality_stream.)"""

from __future__ import annotations

import json
from pathlib import Path

from quality.suite import load_suite
from quality.validator import PASS
from streams.runtime.quality_unique import UniqueTable
from streams.runtime.records import InMessage, Item

DAY_MS = 86_400_000


def _item(offset: int, contact_id: str | None, key: bytes, stamp_ms: int = 0) -> Item:
    return Item(InMessage("crm.contacts.raw", 0, offset, key, None, [], stamp_ms), {"contact_id": contact_id}, 1,
                b"trace")


def _table(tmp_path: Path, **meta: str) -> UniqueTable:
    suite = tmp_path / "unique.json"
    suite.write_text(json.dumps({"name": "u", "expectations": [
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "contact_id"},
         "meta": {"name": "unique", **meta}},
    ]}))
    return UniqueTable(load_suite(suite).of_kind("unique"), DAY_MS, None)


def test_a_duplicate_names_its_first_occurrence_and_nulls_are_not_duplicates(tmp_path: Path) -> None:
    table = _table(tmp_path, severity="warn")
    first = table.judge([_item(0, "C1", b"k1"), _item(1, None, b"k2"), _item(2, None, b"k3")])
    assert first == [PASS, PASS, PASS]
    (again,) = table.judge([_item(7, "C1", b"k9")])
    assert again.warnings == ("unique",) and again.blocking == ()
    assert dict(again.notes) == {"unique": "duplicate of crm.contacts.raw/0/0"}


def test_the_record_key_and_the_horizon(tmp_path: Path) -> None:
    table = _table(tmp_path, on="key")
    table.judge([_item(0, "C1", b"k1", stamp_ms=0)])
    assert table.judge([_item(1, "C2", b"k1", stamp_ms=DAY_MS)])[0].blocking == ("unique",)
    assert table.judge([_item(2, "C3", b"k1", stamp_ms=DAY_MS + 1)]) == [PASS], "past the horizon it is new again"
    assert table.judge([_item(2, "C3", b"k1", stamp_ms=DAY_MS + 1)]) == [PASS], "a replay is not its own duplicate"
