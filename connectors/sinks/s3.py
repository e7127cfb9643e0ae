"""S3 sink (boto3, pyarrow): Parquet files per topic partition, partitioned by topic and the records' date/hour.

An object holds a contiguous offset range of one partition, one hour and one schema, and is named after its
topic, partition, first and last offset. The same range always has the same contents, so a file re-uploaded after
a crash overwrites an identical object; two owners of a partition around a rebalance (or a crash between upload
and commit) may cut different ranges from the same first offset, and those get different names instead of one
replacing the other's records. Consumer offsets are committed only up to the first record not yet uploaded, and
the buffer of a revoked partition is dropped, never uploaded: its next owner re-reads it from the last commit.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field, SecretStr

from connectors.arrow import arrow_type
from connectors.base import ConnectorConfig, Rejected, RetryableError, SchemaLookup, Sink, SinkRecord
from connectors.columns import Column, columns_of, to_json
from connectors.connector_index import register

log = logging.getLogger(__name__)


class S3Config(ConnectorConfig):
    bucket: str = Field(description="Bucket the Parquet files go to.")
    topics: list[str] = Field(min_length=1, description="Topics to archive.")
    prefix: str = Field(default="", description="Key prefix before `<topic>/date=.../hour=.../`.")
    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint (MinIO, moto); default AWS.")
    region: str = Field(default="us-east-1", description="Bucket region.")
    access_key_id: SecretStr | None = Field(
        default=None, description="Access key; default: the AWS credential chain (environment, profile, role)."
    )
    secret_access_key: SecretStr | None = Field(default=None, description="Secret key, with access_key_id.")
    flush_records: int = Field(default=50_000, gt=0, description="Upload a file once it holds this many records.")
    flush_seconds: float = Field(
        default=60.0, gt=0, description="Upload a file at the latest this long after its first record."
    )
    batch_size: int = Field(default=10_000, gt=0, description="Most records consumed per poll.")
    flush_interval: float = Field(default=1.0, gt=0, description="Seconds to wait for records per poll.")
    request_timeout: float = Field(default=30.0, gt=0, description="Seconds one S3 request may take.")


@dataclass
class _Buffer:
    first_offset: int
    hour: datetime
    schema_id: int | None
    opened: float = field(default_factory=time.monotonic)
    records: list[SinkRecord] = field(default_factory=list)


def _hour_of(record: SinkRecord) -> datetime:
    moment = datetime.fromtimestamp(max(record.timestamp_ms, 0) / 1000, tz=UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


@register("s3")
class S3Sink(Sink[S3Config]):
    """Archives topics to S3 as Parquet, partitioned by topic and date/hour."""

    Config = S3Config

    def __init__(self, name: str, config: S3Config) -> None:
        super().__init__(name, config)
        credentials: dict[str, Any] = {}
        if config.access_key_id and config.secret_access_key:
            credentials = {
                "aws_access_key_id": config.access_key_id.get_secret_value(),
                "aws_secret_access_key": config.secret_access_key.get_secret_value(),
            }
        self._s3 = boto3.client(
            "s3",
            endpoint_url=config.endpoint_url,
            region_name=config.region,
            config=BotoConfig(
                connect_timeout=config.request_timeout,
                read_timeout=config.request_timeout,
                retries={"max_attempts": 3, "mode": "standard"},
            ),
            **credentials,
        )
        self._buffers: dict[tuple[str, int], _Buffer] = {}
        self._appended: dict[tuple[str, int], int] = {}
        self._durable: dict[tuple[str, int], int] = {}
        self._schemas: dict[int, list[Column]] = {}

    def write(self, records: Sequence[SinkRecord], schema_of: SchemaLookup) -> list[Rejected]:
        for record in records:
            tp = (record.topic, record.partition)
            if record.offset < self._appended.get(tp, -1):
                continue  # already buffered: the same batch handed in again after a failed upload
            buffer = self._buffers.get(tp)
            hour = _hour_of(record)
            schema_changed = (
                buffer is not None
                and record.schema_id is not None
                and buffer.schema_id is not None
                and record.schema_id != buffer.schema_id
            )
            if buffer is not None and (buffer.hour != hour or schema_changed):
                self._upload(tp, buffer, schema_of)
                buffer = None
            if buffer is None:
                buffer = _Buffer(record.offset, hour, record.schema_id)
                self._buffers[tp] = buffer
            if buffer.schema_id is None:
                buffer.schema_id = record.schema_id
            buffer.records.append(record)
            self._appended[tp] = record.offset + 1
        now = time.monotonic()
        for tp, buffer in list(self._buffers.items()):
            full = len(buffer.records) >= self.config.flush_records
            if full or now - buffer.opened >= self.config.flush_seconds:
                self._upload(tp, buffer, schema_of)
        return []

    def revoked(self, partitions: Sequence[tuple[str, int]]) -> None:
        for tp in partitions:
            dropped = self._buffers.pop(tp, None)
            self._appended.pop(tp, None)
            self._durable.pop(tp, None)
            if dropped is not None:
                log.info(
                    "event=buffer_dropped sink=%s topic=%s partition=%d records=%d",
                    self.name,
                    tp[0],
                    tp[1],
                    len(dropped.records),
                )

    def pending_offsets(self) -> dict[tuple[str, int], int]:
        pending = dict(self._durable)
        pending.update({tp: buffer.first_offset for tp, buffer in self._buffers.items()})
        return pending

    def object_key(self, topic: str, partition: int, hour: datetime, first_offset: int, last_offset: int) -> str:
        return (
            f"{self.config.prefix}{topic}/date={hour:%Y-%m-%d}/hour={hour:%H}/"
            f"{topic}+{partition}+{first_offset:020d}+{last_offset:020d}.parquet"
        )

    def objects_holding(self, topic: str, partition: int, offset: int) -> list[str]:
        """Keys of the objects holding that record (several when two owners cut different ranges around it)."""
        found: list[str] = []
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.config.bucket, Prefix=f"{self.config.prefix}{topic}/"
        )
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    name = str(item["Key"]).rsplit("/", 1)[-1].removesuffix(".parquet")
                    parts = name.rsplit("+", 3)
                    if len(parts) == 4 and parts[0] == topic and int(parts[1]) == partition \
                            and int(parts[2]) <= offset <= int(parts[3]):
                        found.append(str(item["Key"]))
        except (BotoCoreError, ClientError) as exc:
            raise RetryableError(f"S3 listing of {self.config.bucket} failed: {type(exc).__name__}") from exc
        return found

    @property
    def dataset_namespace(self) -> str:
        return f"s3://{self.config.bucket}"

    def dataset_name(self, topic: str) -> str:
        return f"{self.config.prefix}{topic}"

    def _columns(self, schema_id: int | None, schema_of: SchemaLookup) -> list[Column]:
        if schema_id is None:
            return []
        if schema_id not in self._schemas:
            self._schemas[schema_id] = columns_of(schema_of(schema_id))
        return self._schemas[schema_id]

    def _table(self, buffer: _Buffer, schema_of: SchemaLookup) -> pa.Table:
        columns = self._columns(buffer.schema_id, schema_of)
        records = buffer.records
        data: dict[str, pa.Array] = {
            "_key": pa.array([r.key for r in records], pa.string()),
            "_partition": pa.array([r.partition for r in records], pa.int32()),
            "_offset": pa.array([r.offset for r in records], pa.int64()),
            "_timestamp": pa.array([r.timestamp_ms for r in records], pa.timestamp("ms", tz="UTC")),
            "_deleted": pa.array([r.value is None for r in records], pa.bool_()),
        }
        for column in columns:
            values = [(r.value or {}).get(column.name) for r in records]
            if column.kind == "json":
                values = [to_json(v) for v in values]
            data[column.name] = pa.array(values, arrow_type(column))
        return pa.table(data)

    def _upload(self, tp: tuple[str, int], buffer: _Buffer, schema_of: SchemaLookup) -> None:
        sink = io.BytesIO()
        pq.write_table(self._table(buffer, schema_of), sink, compression="zstd")
        key = self.object_key(tp[0], tp[1], buffer.hour, buffer.first_offset, buffer.records[-1].offset)
        try:
            self._s3.put_object(Bucket=self.config.bucket, Key=key, Body=sink.getvalue())
        except (BotoCoreError, ClientError) as exc:
            raise RetryableError(f"S3 upload of {key} failed: {type(exc).__name__}") from exc
        self._durable[tp] = buffer.records[-1].offset + 1
        del self._buffers[tp]
        log.info("event=object_written sink=%s key=%s records=%d", self.name, key, len(buffer.records))
