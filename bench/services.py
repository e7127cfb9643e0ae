"""What the benchmarks share: the cluster they run against, and realistic contacts on a raw topic."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from headwater.kafka import clients
from headwater.ports import free_port
from headwater.settings import HeadwaterSettings, load_settings
from schemas import catalog
from schemas.client import registry_client
from schemas.registry.process import RegistryProcess
from schemas.serde import AvroSerializer
from streams.broker import EmbeddedBroker
from streams.sample import contact

DISTINCT_CONTACTS = 2000


@contextmanager
def broker_at(bootstrap_servers: str | None, folder: Path) -> Iterator[str]:
    """The broker given on the command line, or an embedded one under `folder`, stopped on the way out."""
    if bootstrap_servers:
        yield bootstrap_servers
        return
    broker = EmbeddedBroker(folder / "broker", port=free_port())
    bootstrap = broker.start().bootstrap
    assert bootstrap is not None
    try:
        yield bootstrap
    finally:
        broker.stop()


@contextmanager
def cluster(bootstrap_servers: str | None, registry_url: str | None, tmp: Path) -> Iterator[HeadwaterSettings]:
    """The cluster given on the command line, or an embedded broker and registry stopped on the way out."""
    if bootstrap_servers:
        yield load_settings(kafka={"bootstrap.servers": bootstrap_servers}, registry={"url": registry_url})
        return
    broker = EmbeddedBroker(tmp / "broker", port=free_port(), heap="1g")
    registry: RegistryProcess | None = None
    try:
        status = broker.start()
        assert status.bootstrap is not None
        registry = RegistryProcess(status.bootstrap, tmp / "registry.log").start()
        yield load_settings(kafka={"bootstrap.servers": status.bootstrap}, registry={"url": registry.url})
    finally:
        if registry is not None:
            registry.terminate()
        broker.stop()


def produce_contacts(settings: HeadwaterSettings, topic: str, count: int) -> None:
    """`count` contacts with distinct keys, cycling over 2,000 distinct messy records (encoding is not measured)."""
    rng = random.Random(6)
    client = registry_client(settings.registry)
    serializer = AvroSerializer(client, f"{topic}-value", catalog.load_schema("crm/contact"))
    now_ms = int(time.time() * 1000)
    encoded = [serializer.encode(contact(rng, index, now_ms)) for index in range(DISTINCT_CONTACTS)]
    producer = clients.producer(settings.kafka, **{"linger.ms": 20})
    for index in range(count):
        while True:
            try:
                producer.produce(topic, encoded[index % DISTINCT_CONTACTS], f"C{index:08d}".encode())
                break
            except BufferError:
                producer.poll(0.05)
    remaining = producer.flush(120)
    producer.close()
    if remaining:
        raise RuntimeError(f"{remaining} input records were not acknowledged")
