"""Registry fencing: the primary writes `_schemas` in transactions under one `transactional.id`, so a deposed
primary's writes are refused, and no schema id is ever minted twice across a handover.

The first tests drive two `SchemaLog`s in this process against the session broker, the way two primaries of one
topic would; the last ones run two registry processes with registrations in flight against both while the primary
is killed (chaos (d)) or paused past its session timeout and resumed as a zombie.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import threading
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.common._httpx_compat import httpx as registry_http
from confluent_kafka.schema_registry.error import SchemaRegistryError

from headwater.kafka import clients
from headwater.settings import KafkaSettings
from schemas.registry import errors, records
from schemas.registry.state import RegistryState
from schemas.registry.store import SchemaLog, transactional_id
from tests.connect_support import wait_for
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryProcess, RegistryService

HANDOVER_SECONDS = 45.0


def schema_record(subject: str, schema_id: int) -> tuple[bytes, bytes]:
    text = json.dumps({"type": "record", "name": f"R{schema_id}", "fields": []})
    return records.schema_key(subject, 1), records.SchemaValue(subject, 1, schema_id, text).encode()


def committed_records(kafka: KafkaService, topic: str) -> list[tuple[bytes, bytes | None]]:
    """Every committed record of a storage topic, in order, as a `read_committed` reader sees them."""
    reader = clients.consumer(
        KafkaSettings(bootstrap_servers=kafka.bootstrap),
        f"fencing-probe-{uuid.uuid4().hex[:8]}",
        **{"isolation.level": "read_committed", "enable.partition.eof": True},
    )
    found: list[tuple[bytes, bytes | None]] = []
    try:
        reader.assign([TopicPartition(topic, 0, 0)])
        while True:
            message = wait_for(lambda: reader.poll(1.0), timeout=30, what=f"records of {topic}")
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error
                return found
            key = message.key()
            assert key is not None
            found.append((key, message.value()))
    finally:
        reader.close()


@asynccontextmanager
async def schema_log(kafka: KafkaService, topic: str) -> AsyncIterator[SchemaLog]:
    log = SchemaLog(KafkaSettings(bootstrap_servers=kafka.bootstrap), topic, RegistryState())
    await log.start()
    try:
        yield log
    finally:
        await log.stop()


async def test_a_deposed_primary_write_is_refused_once_a_new_primary_took_over(kafka: KafkaService) -> None:
    topic = f"_schemas_{uuid.uuid4().hex[:8]}"
    async with schema_log(kafka, topic) as old, schema_log(kafka, topic) as new:
        old.follow_role(True)
        await old.take_over()
        await old.write(*schema_record("first", 1))

        new.follow_role(True)  # elected while the old primary still believes it is one
        await new.take_over()
        assert new.state.max_id == 1, "the new primary read the old one's last write before minting any id"

        with pytest.raises(errors.RegistryError) as refused:
            await old.write(*schema_record("zombie", 2))
        assert (refused.value.status, refused.value.code) == (503, errors.UNKNOWN_PRIMARY)
        with pytest.raises(errors.RegistryError) as still_refused:
            await old.take_over()
        assert still_refused.value.status == 503, "a fenced primary stays deposed until it is elected again"

        await new.write(*schema_record("second", 2))
        await old.catch_up()
        assert sorted(old.state.subjects) == ["first", "second"], "the refused write was applied nowhere"

        old.follow_role(True)  # elected again: takes over from the other one in turn
        await old.take_over()
        with pytest.raises(errors.RegistryError):
            await new.write(*schema_record("late", 3))

    written = [records.decode_json(key) for key, _ in committed_records(kafka, topic)]
    assert [key["subject"] for key in written if key] == ["first", "second"]


async def test_taking_over_ends_the_open_transaction_of_a_primary_that_died_mid_write(kafka: KafkaService) -> None:
    """The new primary's fencing init aborts the dead one's open transaction; without it that transaction holds
    every read_committed reader back until it times out (60 s), so the new primary's first write is never read back
    in time."""
    topic = f"_schemas_{uuid.uuid4().hex[:8]}"
    async with schema_log(kafka, topic) as new:
        dead = clients.aiokafka_producer(
            KafkaSettings(bootstrap_servers=kafka.bootstrap), linger_ms=0, transactional_id=transactional_id(topic)
        )
        await dead.start()
        try:
            await dead.begin_transaction()
            key, value = schema_record("half-written", 1)
            await dead.send_and_wait(topic, key=key, value=value, partition=0)
            new.follow_role(True)
            await new.take_over()
        finally:
            await dead.stop()
        await new.write(*schema_record("next", 1))
        assert sorted(new.state.subjects) == ["next"]
    assert [records.decode_json(key) for key, _ in committed_records(kafka, topic)] == [
        records.decode_json(schema_record("next", 1)[0])
    ]


def subject_schema(subject: str) -> Schema:
    name = "F" + subject.rsplit(".", 1)[-1]
    return Schema(json.dumps({"type": "record", "name": name, "fields": [{"name": "a", "type": "string"}]}), "AVRO")


@dataclass
class Registrar:
    """Registers `subjects` one after another through one registry process, as a producer's serializer would,
    keeping the id of every registration answered 200; refusals (503, connection errors) are allowed."""

    url: str
    subjects: list[str]
    _answered: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, stop: threading.Event) -> None:
        client = SchemaRegistryClient({"url": self.url, "retries.wait.ms": 200, "timeout": 30})
        for subject in self.subjects:
            if stop.is_set():
                return
            try:
                schema_id = client.register_schema(subject, subject_schema(subject))
            except (SchemaRegistryError, registry_http.TransportError):  # its HTTP client's own connection errors
                continue
            with self._lock:
                self._answered[subject] = schema_id

    def answered(self) -> dict[str, int]:
        with self._lock:
            return dict(self._answered)


@contextmanager
def registering(registrars: list[Registrar]) -> Iterator[None]:
    """Every registrar in its own thread; a registrar that fails unexpectedly fails the test when it ends."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def run(registrar: Registrar) -> None:
        try:
            registrar.run(stop)
        except BaseException as exc:
            failures.append(exc)
            raise

    threads = [threading.Thread(target=run, args=(registrar,)) for registrar in registrars]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads), "a registration never returned"
    assert not failures, failures


def is_primary(process: RegistryProcess) -> bool:
    answer = httpx.get(f"{process.url}/readyz", timeout=5)
    return answer.status_code == 200 and bool(answer.json().get("primary"))


def primary_of(*processes: RegistryProcess) -> RegistryProcess:
    def only_one() -> list[RegistryProcess]:
        primaries = [process for process in processes if is_primary(process)]
        return primaries if len(primaries) == 1 else []

    return wait_for(only_one, timeout=HANDOVER_SECONDS, what="exactly one primary")[0]


def assert_ids_truthful(kafka: KafkaService, survivor: RegistryProcess, told: dict[str, set[int]]) -> None:
    """Read `_schemas` back: no id names two schemas, no schema holds two ids or versions, and every registration
    answered 200 is stored, and answered by the survivor, with the id its client was told."""
    schemas_by_id: dict[int, set[str]] = defaultdict(set)
    stored: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for key, value in committed_records(kafka, survivor.topic):
        decoded = records.decode_json(key)
        body = records.decode_json(value)
        if decoded is None or decoded.get("keytype") != records.SCHEMA or body is None:
            continue
        schema = records.decode_schema_value(body)
        schemas_by_id[schema.id].add(schema.schema)
        stored[schema.subject].add((schema.version, schema.id))
    minted_twice = {schema_id: texts for schema_id, texts in schemas_by_id.items() if len(texts) > 1}
    assert not minted_twice, f"ids minted for two schemas: {minted_twice}"
    assert all(len(versions) == 1 for versions in stored.values()), "a schema registered twice under one subject"
    client = survivor.client()
    for subject, ids in told.items():
        assert len(ids) == 1, f"{subject} was answered with two ids: {ids}"
        (schema_id,) = ids
        assert stored[subject] == {(1, schema_id)}, f"{subject} answered id {schema_id}, stored {stored[subject]}"
        assert client.lookup_schema(subject, subject_schema(subject)).schema_id == schema_id


def told_ids(registrars: list[Registrar]) -> dict[str, set[int]]:
    told: dict[str, set[int]] = defaultdict(set)
    for registrar in registrars:
        for subject, schema_id in registrar.answered().items():
            told[subject].add(schema_id)
    return told


@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_registrations_in_flight_against_both_survive_the_primary_stopping(
    registry: RegistryService, stop_signal: signal.Signals
) -> None:
    one = registry.spawn()
    two = registry.spawn(one.topic)
    try:
        primary = primary_of(one, two)
        survivor = two if primary is one else one
        run = uuid.uuid4().hex[:6]
        subjects = [f"fence.{run}.{n}" for n in range(2000)]
        registrars = [Registrar(one.url, subjects), Registrar(two.url, subjects)]
        by_survivor = registrars[[one, two].index(survivor)]
        with registering(registrars):
            wait_for(lambda: len(told_ids(registrars)) >= 30, timeout=60, what="registrations before the handover")
            assert primary.process is not None
            primary.process.send_signal(stop_signal)
            try:
                exit_code = primary.process.wait(30)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the primary did not stop within 30 s; its log ends:\n{primary.logs()[-3000:]}")
            assert exit_code == (0 if stop_signal == signal.SIGTERM else -signal.SIGKILL)
            wait_for(lambda: is_primary(survivor), timeout=HANDOVER_SECONDS, what="the survivor to take over")
            handed_over = len(by_survivor.answered())
            wait_for(
                lambda: len(by_survivor.answered()) >= handed_over + 30, timeout=60, what="registrations afterwards"
            )
        assert_ids_truthful(registry.kafka, survivor, told_ids(registrars))
    finally:
        one.terminate()
        two.terminate()


def test_a_paused_primary_resumed_as_a_zombie_cannot_mint_an_id_its_successor_used(registry: RegistryService) -> None:
    """SIGSTOP the primary past its session timeout, let the other one take over and mint ids, then SIGCONT it with
    a registration waiting in its socket: it decides that registration on its stale state before it hears of the
    rebalance, so only fencing stops it from minting one of its successor's ids."""
    one = registry.spawn()
    two = registry.spawn(one.topic)
    try:
        zombie = primary_of(one, two)
        successor = two if zombie is one else one
        run = uuid.uuid4().hex[:6]
        told: dict[str, set[int]] = defaultdict(set)
        for n in range(3):
            subject = f"zombie.{run}.{n}"
            told[subject].add(successor.client().register_schema(subject, subject_schema(subject)))
        assert zombie.process is not None
        os.kill(zombie.process.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: is_primary(successor), timeout=HANDOVER_SECONDS, what="the successor to take over")
            for n in range(3, 8):
                subject = f"zombie.{run}.{n}"
                told[subject].add(successor.client().register_schema(subject, subject_schema(subject)))
            waiting = f"zombie.{run}.waiting"
            request = http.client.HTTPConnection("127.0.0.1", zombie.port, timeout=60)
            request.request(
                "POST",
                f"/subjects/{waiting}/versions",
                body=json.dumps({"schema": subject_schema(waiting).schema_str}),
                headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
            )
        finally:
            os.kill(zombie.process.pid, signal.SIGCONT)
        answer = request.getresponse()
        body = json.loads(answer.read())
        request.close()
        if answer.status == 200:  # it heard of the rebalance first and forwarded the request to its successor
            told[waiting].add(body["id"])
        else:
            assert (answer.status, body["error_code"]) == (503, errors.UNKNOWN_PRIMARY), body
        survivor = primary_of(one, two)
        told[waiting].add(survivor.client().register_schema(waiting, subject_schema(waiting)))
        assert_ids_truthful(registry.kafka, survivor, told)
    finally:
        one.terminate()
        two.terminate()
