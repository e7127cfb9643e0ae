"""End-to-end latencies in fixed memory: counts in log-spaced buckets (HDR-style), whatever the number of records.

Buckets grow by 1% from 0.1 ms to about 4.5 hours (1,900 counters), so a percentile read from them is within 1% of
the exact value. Workers of several processes merge theirs (bench/pipeline.py) through `to_json`/`from_json`.
"""

from __future__ import annotations

import math
from typing import Any

FLOOR_MS = 0.1
GROWTH = 1.01
BUCKETS = 1900
_LOG_GROWTH = math.log(GROWTH)


class LatencyHistogram:
    def __init__(self) -> None:
        self.counts = [0] * BUCKETS
        self.count = 0

    @staticmethod
    def _bucket(ms: float) -> int:
        """Bucket 0 holds up to FLOOR_MS (and clock skew below zero); bucket i up to FLOOR_MS * GROWTH**i."""
        if ms <= FLOOR_MS:
            return 0
        return min(BUCKETS - 1, math.ceil(math.log(ms / FLOOR_MS) / _LOG_GROWTH))

    def record(self, ms: float) -> None:
        self.counts[self._bucket(ms)] += 1
        self.count += 1

    def percentile(self, fraction: float) -> float:
        """The latency (ms) under which `fraction` of the recorded ones lie: its bucket's upper bound; 0 when empty."""
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(fraction * self.count))
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return FLOOR_MS * GROWTH**index
        raise AssertionError("counts do not add up to count")

    def merge(self, other: LatencyHistogram) -> None:
        self.counts = [mine + theirs for mine, theirs in zip(self.counts, other.counts, strict=True)]
        self.count += other.count

    def to_json(self) -> dict[str, Any]:
        return {"buckets": {str(index): count for index, count in enumerate(self.counts) if count}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LatencyHistogram:
        histogram = cls()
        for index, count in data["buckets"].items():
            histogram.counts[int(index)] = int(count)
            histogram.count += int(count)
        return histogram
