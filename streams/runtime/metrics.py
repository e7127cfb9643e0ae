"""Prometheus metrics of the pipeline workers (names per ARCHITECTURE.md: headwater_<part>_<what>_<unit>)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDS = Counter(
    "headwater_pipeline_records_total",
    "Records by pipeline, stage reached and outcome (in, out, dead_letter).",
    ["pipeline", "stage", "outcome"],
)
DEAD_LETTERS = Counter(
    "headwater_pipeline_dead_letters_total",
    "Dead letters by pipeline, stage and reason (the error class of the dead-letter envelope).",
    ["pipeline", "stage", "reason"],
)
BATCH_SECONDS = Histogram(
    "headwater_pipeline_batch_duration_seconds",
    "Time from a micro-batch read to its offsets committed.",
    ["pipeline"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LATENCY_SECONDS = Histogram(
    "headwater_pipeline_end_to_end_latency_seconds",
    "From the input record's timestamp to its output being acknowledged by the broker.",
    ["pipeline"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ASSIGNED_PARTITIONS = Gauge(
    "headwater_pipeline_assigned_partitions", "Input partitions assigned to this worker.", ["pipeline"]
)
RETRIES = Counter(
    "headwater_pipeline_retries_total", "Batches retried because a dependency failed.", ["pipeline", "reason"]
)
WAITING = Gauge(
    "headwater_pipeline_waiting_for_dependency",
    "1 while the pipeline's consumption is paused because the broker, the registry or a provider fails.",
    ["pipeline"],
)
FAILURES = Counter(
    "headwater_pipeline_failures_total", "Unexpected exceptions (bugs) that stopped the pipeline.",
    ["pipeline", "error"],
)
CONSUMER_LAG = Gauge(
    "headwater_pipeline_consumer_lag_records",
    "Records of an assigned input partition not yet read by this worker: its high watermark minus the consumer's "
    "position, refreshed about once a second.",
    ["pipeline", "topic", "partition"],
)
STAGE_SECONDS = Counter(
    "headwater_pipeline_stage_seconds_total",
    "Wall time spent in each step of a micro-batch (consume, decode, enrich, quality, encode, deliver, commit).",
    ["pipeline", "stage"],
)
