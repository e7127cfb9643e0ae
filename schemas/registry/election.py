"""Choosing the one primary that takes writes, with Kafka's own group protocol.

Every registry process joins the consumer group `<group>` subscribed to the single-partition storage topic; the
group coordinator assigns that partition to exactly one member, and that member is the primary. When it dies or
leaves, the coordinator rebalances (after `session.timeout.ms` for a crash) and another member gets the partition.
The member's Kafka `client.id` carries its advertised URL, so the others find the primary by describing the group.
The election consumer never reads records (its partition is paused): the storage reader is a separate consumer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from headwater.kafka import clients
from headwater.settings import KafkaSettings

log = logging.getLogger(__name__)

CLIENT_ID_PREFIX = "headwater-registry "
PRIMARY_URL_TTL_SECONDS = 2.0


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, election: PrimaryElection) -> None:
        self.election = election

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            self.election.set_primary(False)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.election.set_primary(bool(assigned))
        self.election.settled.set()
        if assigned and self.election.consumer is not None:
            self.election.consumer.pause(*assigned)


class PrimaryElection:
    def __init__(
        self, kafka: KafkaSettings, topic: str, group: str, url: str, on_change: Callable[[bool], None] | None = None
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self.group = group
        self.url = url
        self.on_change = on_change
        self.is_primary = False
        self.settled = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._cached_primary: tuple[float, str | None] = (0.0, None)

    def set_primary(self, primary: bool) -> None:
        if primary != self.is_primary:
            log.info("event=registry_role_changed role=%s url=%s", "primary" if primary else "secondary", self.url)
        self.is_primary = primary
        if self.on_change is not None:
            self.on_change(primary)
        self._cached_primary = (0.0, None)

    async def start(self) -> None:
        self.consumer = clients.aiokafka_consumer(
            self.kafka.model_copy(update={"client_id": CLIENT_ID_PREFIX + self.url}),
            group_id=self.group,
            enable_auto_commit=False,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
        )
        await self.consumer.start()
        self.consumer.subscribe([self.topic], listener=_Listener(self))
        self._loop_task = asyncio.create_task(self._stay_in_group(), name="registry-election")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self.consumer is not None:
            await self.consumer.stop()
        self.is_primary = False

    async def _stay_in_group(self) -> None:
        assert self.consumer is not None
        while True:
            try:
                await self.consumer.getmany(timeout_ms=1000)
            except Exception as exc:  # keep the membership loop alive across broker hiccups
                log.warning("event=registry_election_poll_failed error=%s", type(exc).__name__)
                await asyncio.sleep(1.0)

    async def primary_url(self) -> str | None:
        """This process's URL when primary; otherwise the URL of the member holding the partition, if any."""
        if self.is_primary:
            return self.url
        checked_at, cached = self._cached_primary
        if cached is not None and time.monotonic() - checked_at < PRIMARY_URL_TTL_SECONDS:
            return cached
        found = await asyncio.get_running_loop().run_in_executor(None, self._describe_primary)
        self._cached_primary = (time.monotonic(), found)
        return found

    def forget_primary(self) -> None:
        self._cached_primary = (0.0, None)

    def _describe_primary(self) -> str | None:
        admin = clients.admin(self.kafka)
        try:
            group = admin.describe_consumer_groups([self.group], request_timeout=5)[self.group].result(timeout=10)
        except Exception as exc:  # KafkaException for an unknown or rebalancing group
            log.warning("event=registry_primary_lookup_failed error=%s", type(exc).__name__)
            return None
        for member in group.members:
            partitions = member.assignment.topic_partitions if member.assignment else []
            if any(tp.topic == self.topic for tp in partitions) and member.client_id.startswith(CLIENT_ID_PREFIX):
                url: str = member.client_id.removeprefix(CLIENT_ID_PREFIX)
                return url
        return None
