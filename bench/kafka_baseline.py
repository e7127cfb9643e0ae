"""Kafka ceiling on this machine: confluent-kafka produce, consume and consume->produce passthrough rates.

Starts its own embedded broker in a temporary folder, so nothing else shares it. Every later benchmark is
compared against these figures (measured again in its own run, since the machine is shared and noisy).
Usage: python bench/kafka_baseline.py [--messages N] [--size BYTES] [--smoke] [--bootstrap-servers B]
  --smoke  5,000 messages: checks the benchmark runs (tests/test_bench_kafka_baseline.py)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from services import broker_at

PRODUCER_TUNING = {"linger.ms": 20, "batch.size": 1_000_000, "compression.type": "lz4", "acks": "all"}


@dataclass
class Rate:
    name: str
    messages: int
    seconds: float
    size: int

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds

    @property
    def megabytes_per_second(self) -> float:
        return self.messages * self.size / self.seconds / 1e6


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(30)


def _produce(producer: Producer, topic: str, key: bytes | None, value: bytes | None, headers: Any = None) -> None:
    """Produce one message, serving delivery reports while the local queue is full."""
    while True:
        try:
            producer.produce(topic, key=key, value=value, headers=headers)
            return
        except BufferError:
            producer.poll(0.05)


def _consume(consumer: Consumer, count: int, each: Callable[[list[Message]], None]) -> float:
    """Hand every batch to `each` until `count` good messages arrived; returns when the first batch came."""
    seen = 0
    began: float | None = None
    while seen < count:
        batch = consumer.consume(10_000, timeout=1.0)
        if batch and began is None:
            began = time.perf_counter()
        good = [message for message in batch if not message.error()]
        seen += len(good)
        each(good)
    assert began is not None
    return began


def produce(bootstrap: str, topic: str, count: int, size: int) -> Rate:
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_TUNING})
    payload = os.urandom(size // 2).hex().encode()[:size]
    began = time.perf_counter()
    for i in range(count):
        _produce(producer, topic, str(i % 1000).encode(), payload)
        producer.poll(0)
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - began
    if remaining:
        raise SystemExit(f"{remaining} messages were not delivered")
    return Rate("produce", count, elapsed, size)


def _consumer(bootstrap: str) -> Consumer:
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"bench-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.max.bytes": 52_428_800,
        "queued.max.messages.kbytes": 262_144,
    })


def consume(bootstrap: str, topic: str, count: int, size: int) -> Rate:
    consumer = _consumer(bootstrap)
    consumer.subscribe([topic])
    began = _consume(consumer, count, lambda batch: None)
    elapsed = time.perf_counter() - began
    consumer.close()
    return Rate("consume", count, elapsed, size)


def passthrough(bootstrap: str, source: str, sink: str, count: int, size: int) -> Rate:
    consumer = _consumer(bootstrap)
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_TUNING})
    consumer.subscribe([source])

    def forward(batch: list[Message]) -> None:
        for message in batch:
            _produce(producer, sink, message.key(), message.value(), message.headers())
        producer.poll(0)
        if batch:
            consumer.commit(asynchronous=True)

    began = _consume(consumer, count, forward)
    remaining = producer.flush(120)
    assert remaining == 0
    elapsed = time.perf_counter() - began
    consumer.close()
    return Rate("passthrough", count, elapsed, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--smoke", action="store_true", help="5,000 messages: checks the benchmark runs")
    parser.add_argument("--bootstrap-servers", help="an existing broker instead of an embedded one")
    args = parser.parse_args()
    messages = 5_000 if args.smoke else args.messages

    with tempfile.TemporaryDirectory(prefix="hw-bench-") as folder, \
            broker_at(args.bootstrap_servers, Path(folder)) as bootstrap:
        run = uuid.uuid4().hex[:6]
        source, sink = f"bench.baseline{run}.raw", f"bench.baseline{run}.enriched"
        create_topic(bootstrap, source, args.partitions)
        create_topic(bootstrap, sink, args.partitions)
        rates = [
            produce(bootstrap, source, messages, args.size),
            consume(bootstrap, source, messages, args.size),
            passthrough(bootstrap, source, sink, messages, args.size),
        ]

    print(f"Kafka baseline: {messages:,} messages of {args.size} B, {args.partitions} partitions, "
          f"{os.cpu_count()} cores, broker on this machine")
    print(f"{'path':<12} {'msgs/s':>10} {'MB/s':>8} {'ratio to produce':>17}")
    for rate in rates:
        print(f"{rate.name:<12} {rate.per_second:>10,.0f} {rate.megabytes_per_second:>8.1f} "
              f"{rate.per_second / rates[0].per_second:>17.2f}")


if __name__ == "__main__":
    main()
