"""Tumbling windows across micro-batches: count windows split a batch, time windows align on record time, and a
batch retried after a failed write is not counted twice."""

from __future__ import annotations

from streams.runtime.quality_windows import TumblingWindows
from streams.runtime.records import InMessage, Item

T0 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000  # a minute boundary


def _items(offsets: range, stamp_ms: int = T0, step_ms: int = 0, partition: int = 0) -> list[Item]:
    return [
        Item(InMessage("crm.contacts.raw", partition, offset, None, None, [], stamp_ms + step_ms * index),
             {"sentiment": offset / 10, "other": "not kept"}, 1, b"trace")
        for index, offset in enumerate(offsets)
    ]


def test_count_windows_close_at_n_records_across_batches() -> None:
    windows = TumblingWindows(["sentiment"], records=4)
    assert windows.add(_items(range(0, 3))) == []
    (first, second) = windows.add(_items(range(3, 9)))  # closes at offset 3 and at 7: 8 stays open
    assert first.offsets == {"crm.contacts.raw/0": [0, 3]} and len(first.rows) == 4
    assert second.offsets == {"crm.contacts.raw/0": [4, 7]}
    assert first.rows[0] == {"sentiment": 0.0}, "a window keeps only the columns its aggregates read"
    assert windows.current.offsets == {"crm.contacts.raw/0": [8, 8]}


def test_time_windows_align_on_record_time_and_close_on_the_first_record_past_their_end() -> None:
    windows = TumblingWindows(["sentiment"], seconds=60)
    assert windows.add(_items(range(0, 6), stamp_ms=T0 + 1_000, step_ms=10_000)) == []  # 1 s .. 51 s
    (closed,) = windows.add(_items(range(6, 8), stamp_ms=T0 + 61_000))
    assert (closed.start_ms, closed.end_ms) == (T0, T0 + 60_000)
    assert closed.offsets == {"crm.contacts.raw/0": [0, 5]}
    assert windows.current.start_ms == T0 + 60_000


def test_a_retried_batch_is_not_counted_twice() -> None:
    windows = TumblingWindows(["sentiment"], records=10)
    batch = _items(range(0, 6))
    windows.add(batch)
    windows.add(batch)
    assert len(windows.current.rows) == 6
    windows.add(_items(range(0, 2), partition=1))
    assert windows.current.offsets == {"crm.contacts.raw/0": [0, 5], "crm.contacts.raw/1": [0, 1]}
