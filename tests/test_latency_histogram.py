"""A worker's latency record is a fixed-size histogram (it used to be a list growing by one float per record): its
size does not depend on the record count, and its percentiles stay within 1% of the exact ones."""

from __future__ import annotations

import random
import statistics
import sys

from streams.runtime.batches import WorkerStats
from streams.runtime.latency import BUCKETS, LatencyHistogram


def _exact(values: list[float], fraction: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(fraction * 1000) - 1]


def test_percentiles_are_within_one_percent_of_exact() -> None:
    rng = random.Random(8)
    values = [rng.lognormvariate(3, 1.2) for _ in range(50_000)] + [rng.uniform(0.5, 5) for _ in range(5_000)]
    histogram = LatencyHistogram()
    for value in values:
        histogram.record(value)
    for fraction in (0.5, 0.9, 0.99, 0.999):
        exact = _exact(values, fraction)
        assert abs(histogram.percentile(fraction) - exact) <= 0.011 * exact, fraction


def test_worker_stats_stay_the_same_size_whatever_the_record_count() -> None:
    stats = WorkerStats()
    sizes = []
    for _ in range(3):
        for n in range(100_000):
            stats.latency_ms.record(float(n % 5000) - 3)  # clock skew can make a latency negative
        sizes.append((len(stats.latency_ms.counts), sys.getsizeof(stats.latency_ms.counts)))
    assert sizes == [(BUCKETS, sizes[0][1])] * 3
    assert stats.latency_ms.count == 300_000


def test_histograms_of_several_workers_merge_through_json() -> None:
    first, second = LatencyHistogram(), LatencyHistogram()
    for value in range(1, 101):
        (first if value % 2 else second).record(float(value))
    merged = LatencyHistogram.from_json(first.to_json())
    merged.merge(LatencyHistogram.from_json(second.to_json()))
    assert merged.count == 100
    assert abs(merged.percentile(0.5) - 50) <= 0.5 and abs(merged.percentile(0.99) - 99) <= 1
    assert LatencyHistogram().percentile(0.99) == 0.0
