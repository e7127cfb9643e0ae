"""The three client stacks Headwater uses, proven against the embedded broker with content and count checks."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, Producer, TopicPartition

from headwater.kafka import clients
from headwater.ports import free_port
from headwater.settings import KafkaSettings
from tests.fixtures.kafka import KafkaService


def _drain(
    bootstrap: str,
    topic: str,
    expected: int,
    deadline_s: float = 90,
    producer_process: subprocess.Popen[bytes] | None = None,
) -> list[tuple[bytes, bytes, int]]:
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"drain-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    seen: list[tuple[bytes, bytes, int]] = []
    deadline = time.monotonic() + deadline_s
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            if producer_process is not None and producer_process.poll() is not None:
                break
            for message in consumer.consume(1000, timeout=0.5):
                if not message.error():
                    seen.append((message.key(), message.value(), message.partition()))
    finally:
        consumer.close()
    return seen


def test_confluent_admin_producer_consumer(kafka: KafkaService) -> None:
    topic = kafka.create_topic(partitions=3)
    metadata = kafka.admin().list_topics(topic, timeout=10)
    assert len(metadata.topics[topic].partitions) == 3

    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True, "linger.ms": 5})
    sent = {(f"acct-{i % 50}".encode(), f"event-{i}".encode()) for i in range(5_000)}
    for key, value in sorted(sent):
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0

    received = _drain(kafka.bootstrap, topic, len(sent))
    assert {(key, value) for key, value, _ in received} == sent
    assert len(received) == len(sent)
    partitions_by_key: dict[bytes, set[int]] = defaultdict(set)
    for key, _, partition in received:
        partitions_by_key[key].add(partition)
    assert all(len(parts) == 1 for parts in partitions_by_key.values()), "a key always lands in one partition"
    assert {partition for _, _, partition in received} == {0, 1, 2}


async def test_aiokafka_producer_and_consumer_group(kafka: KafkaService) -> None:
    topic = kafka.create_topic(partitions=2)
    group = f"group-{uuid.uuid4().hex}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        batch = [producer.send(topic, key=f"k{i % 10}".encode(), value=f"v{i}".encode()) for i in range(2_000)]
        acks = await asyncio.gather(*(await asyncio.gather(*batch)))
    finally:
        await producer.stop()
    assert len(acks) == 2_000 and {ack.partition for ack in acks} == {0, 1}

    consumers = [
        AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap, group_id=group, auto_offset_reset="earliest")
        for _ in range(2)
    ]
    for consumer in consumers:
        await consumer.start()
    try:
        received: dict[int, list[bytes]] = defaultdict(list)
        deadline = time.monotonic() + 60
        while sum(map(len, received.values())) < 2_000 and time.monotonic() < deadline:
            for index, consumer in enumerate(consumers):
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    received[index].extend(record.value for record in records if record.value is not None)
        assignments = [consumer.assignment() for consumer in consumers]
    finally:
        for consumer in consumers:
            await consumer.stop()
    assert all(len(assigned) == 1 for assigned in assignments), "the group splits two partitions between two members"
    assert sorted(v for values in received.values() for v in values) == sorted(f"v{i}".encode() for i in range(2_000))


def test_faust_agent_relays_10000_keyed_messages_in_per_key_order(kafka: KafkaService, tmp_path: Path) -> None:
    source = kafka.create_topic(partitions=3)
    sink = kafka.create_topic(partitions=3)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True, "linger.ms": 5})
    keys = [f"customer-{i}".encode() for i in range(100)]
    for i in range(10_000):
        key = keys[i % len(keys)]
        producer.produce(source, key=key, value=f"{key.decode()}:{i // len(keys)}".encode())
    assert producer.flush(30) == 0

    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": kafka.bootstrap,
        "SOURCE_TOPIC": source,
        "SINK_TOPIC": sink,
        "FAUST_DATADIR": str(tmp_path / "faust"),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.apps.faust_relay", "worker", "--loglevel", "warn",
         "--web-port", str(free_port()), "--web-host", "127.0.0.1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        relayed = _drain(kafka.bootstrap, sink, 10_000, deadline_s=180, producer_process=worker)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            output, _ = worker.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            output, _ = worker.communicate()
    assert len(relayed) == 10_000, output.decode(errors="replace")[-3000:]
    by_key: dict[bytes, list[int]] = defaultdict(list)
    for key, value, _ in relayed:
        name, sequence = value.decode().rsplit(":", 1)
        assert name.encode() == key
        by_key[key].append(int(sequence))
    assert set(by_key) == set(keys)
    assert all(sequences == list(range(100)) for sequences in by_key.values())


def test_committed_offsets_are_kept_by_the_broker(kafka: KafkaService) -> None:
    topic = kafka.create_topic()
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    for i in range(10):
        producer.produce(topic, value=str(i).encode())
    assert producer.flush(10) == 0
    group = f"commit-{uuid.uuid4().hex}"
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        taken = []
        deadline = time.monotonic() + 30
        while len(taken) < 4 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                taken.append(message)
        consumer.commit(message=taken[3], asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        consumer.close()
    assert committed[0].offset == 4


async def test_every_producer_headwater_uses_puts_a_key_in_the_same_partition(kafka: KafkaService) -> None:
    topic = kafka.create_topic(partitions=6)
    keys = [f"0065e00000{i:05d}".encode() for i in range(300)]
    settings = KafkaSettings.model_validate({"bootstrap.servers": kafka.bootstrap})
    producer = clients.producer(settings)
    placed_by_librdkafka: dict[bytes, int] = {}

    def record(error: object, message: object) -> None:
        assert error is None
        placed_by_librdkafka[message.key()] = message.partition()  # type: ignore[attr-defined]

    for key in keys:
        producer.produce(topic, key=key, value=b"x", on_delivery=record)
    assert producer.flush(30) == 0

    aio = clients.aiokafka_producer(settings)
    await aio.start()
    try:
        placed_by_aiokafka = {key: (await (await aio.send(topic, key=key, value=b"x"))).partition for key in keys}
    finally:
        await aio.stop()
    assert placed_by_librdkafka == placed_by_aiokafka
    assert len(set(placed_by_aiokafka.values())) == 6
