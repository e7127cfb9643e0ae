"""The Faust runtime (`headwater run --runtime faust`; `direct` is the default, being faster): every pipeline is a
faust-streaming app whose agent takes micro-batches of events, runs them through the engine, produces through
Faust's producer and only then acks the input events.

- One `faust.App` per pipeline: a Faust app is one consumer group, and each pipeline has its own group.
- At-least-once: an event is acked (so Faust's consumer may commit its offset) only after every output and dead
  letter derived from it was acknowledged by the broker. The agent uses `stream.noack_take`, which leaves every
  ack to the caller; `stream.noack().take_events` would not do: it acks its buffer in a `finally` when the
  generator resumes or is closed, so a batch abandoned at shutdown would be committed without being delivered.
- Shutdown: the runner sets `stop`, then stops Faust's worker, which stops fetching, waits until the events
  handed to the agents are acked (the agent finishes its batches) and commits the acked offsets.
- Faust's per-event path (`Consumer._drain_messages` awaits a callback per message) costs more than a plain
  confluent-kafka batch consume; `--runtime direct` (`streams.runtime.worker`) avoids it.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import faust
from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError
from faust.streams import Stream
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, EventT, StreamT
from faust.web import Request, Response, View

from headwater import status as endpoints
from headwater.dependencies import DependencyDown
from headwater.envelope import HeaderList
from headwater.kafka import errors
from headwater.kafka.errors import ProduceFailure
from headwater.kafka.python_clients import faust_broker_options
from headwater.settings import HeadwaterSettings
from headwater.statuspage.page import STATUS_JSON, STATUS_PATHS, StatusPage
from streams.runtime import batches, lag, metrics
from streams.runtime.batches import WorkerOptions, WorkerStats
from streams.runtime.config import PipelineConfig
from streams.runtime.engine import PipelineEngine
from streams.runtime.failures import Health, PipelineFailed, bug, not_ready_reasons
from streams.runtime.records import HEADROOM, InMessage, OutMessage

log = logging.getLogger(__name__)
SHUTDOWN_LIMIT_S = 60.0


def in_message(event: EventT[Any]) -> InMessage:
    """The raw record behind a Faust event: bytes as read, so dead letters keep them untouched."""
    message = event.message
    timestamp = message.timestamp
    return InMessage(
        message.topic, message.partition, message.offset, message.key, message.value,
        cast(HeaderList, list(message.headers or ())),
        int(timestamp * 1000) if timestamp else int(time.time() * 1000),
    )


class IdempotentProducer(aiokafka_driver.Producer):
    """Faust's aiokafka producer asks for idempotence only inside transactions (its `_settings_extra`); every
    Headwater producer is idempotent with `acks=all` (ARCHITECTURE.md), so this one always asks for it."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {"acks": "all", "enable_idempotence": True}


class FaustPipeline:
    """One pipeline as a Faust app with one agent."""

    def __init__(self, config: PipelineConfig, settings: HeadwaterSettings, options: WorkerOptions) -> None:
        self.config = config
        self.settings = settings
        self.options = options
        self.stats = WorkerStats()
        self.health = Health()
        self.failed: PipelineFailed | None = None
        self.assigned = 0
        self.running = False
        self.engine: PipelineEngine | None = None
        self.app: faust.App | None = None
        self._stop = asyncio.Event()
        self._label = config.label
        self._lag = lag.LagGauge(self._label)

    @property
    def ready(self) -> bool:
        return self.running and self.assigned > 0 and self.health.reason is None

    def build(self, prepared: batches.Prepared, datadir: Path, stop: asyncio.Event,
              web_port: int | None = None, web_host: str = "127.0.0.1") -> faust.App:
        self.engine, self._stop = prepared.engine, stop
        limits = prepared.max_bytes.values()
        session_s = self.options.session_timeout_ms / 1000
        app = faust.App(
            self.config.group,
            **faust_broker_options(self.settings.kafka),
            broker_session_timeout=session_s,
            broker_heartbeat_interval=max(0.5, session_s / 5),
            consumer_auto_offset_reset="earliest",
            key_serializer="raw",
            value_serializer="raw",
            datadir=str(datadir / self.config.name),
            autodiscover=False,
            topic_allow_declare=False,
            topic_disable_leader=True,
            stream_buffer_maxsize=max(4096, 2 * self.config.batch.size),
            producer_acks=-1,
            producer_linger=0.005,
            producer_max_batch_size=max(1024, min(min(limits) - 512, 1_048_576)),
            producer_max_request_size=max(limits) + HEADROOM,
            producer_request_timeout=60.0,
            web_enabled=web_port is not None,
            web_port=web_port or 6066,
            web_bind=web_host,
            web_host=web_host,
            web_stats_enabled=False,
            web_graph_enabled=False,
            web_router_enabled=False,
            web_tables_enabled=False,
            web_metrics_enabled=False,
        )
        # The app's public producer setter: Faust then starts and stops this producer as it would its own.
        app.producer = IdempotentProducer(app.transport, loop=app.loop, beacon=app.beacon)
        topic = app.topic(*self.config.input.topics, key_type=bytes, value_type=bytes)
        app.agent(topic, name=f"headwater.pipeline.{self.config.name}")(self._supervised)
        app.on_partitions_assigned.connect(self._on_assigned)
        app.on_partitions_revoked.connect(self._on_revoked)
        app.timer(lag.REFRESH_S, name=f"headwater.lag.{self.config.name}")(self._report_lag)
        self.app = app
        return app

    def _on_assigned(self, sender: Any, /, *args: Any, **kwargs: Any) -> None:
        assigned = cast(set[TP], args[0])  # the signal carries the whole new assignment
        mine = [tp for tp in assigned if tp.topic in self.config.input.topics]
        self.assigned = len(mine)
        metrics.ASSIGNED_PARTITIONS.labels(self._label).set(self.assigned)
        log.info("event=partitions_assigned pipeline=%s count=%d runtime=faust", self._label, self.assigned)

    def _on_revoked(self, sender: Any, /, *args: Any, **kwargs: Any) -> None:
        self.assigned = 0
        metrics.ASSIGNED_PARTITIONS.labels(self._label).set(0)
        self._lag.forget((tp.topic, tp.partition) for tp in cast(set[TP], args[0]))
        log.info("event=partitions_revoked pipeline=%s count=%d runtime=faust", self._label, len(args[0]))

    async def _report_lag(self) -> None:
        assert self.app is not None
        self._lag.set(await lag.of_faust_app(self.app, self.config.input.topics))

    async def _supervised(self, agent_stream: StreamT[bytes]) -> None:
        """The agent, stopping the runtime on a bug: Faust would restart a crashed agent into the same batch."""
        try:
            await self._agent(agent_stream)
        except PipelineFailed as exc:
            # A fresh copy: the raised one's traceback holds the agent's frames, and so the failed batch's events.
            self.failed = PipelineFailed(exc.pipeline, exc.error)
        except Exception as exc:  # a bug outside the stages
            self.failed = bug(self._label, exc, self.health)
        if self.failed is not None:
            # Faust's shutdown waits for every event it handed out to be acked; the failed batch's are released
            # unacked instead (so never committed): the stream lets go of the last one it holds.
            agent_stream.current_event = None
            self._stop.set()

    async def _agent(self, agent_stream: StreamT[bytes]) -> None:
        assert self.engine is not None
        engine, stop, retry_max_s = self.engine, self._stop, self.options.retry_max_s
        size, within = self.config.batch.size, self.config.batch.linger_ms / 1000
        stream = cast(Stream[bytes], agent_stream)
        # noack_take yields the buffered events themselves (its annotation says values).
        waiting_since = time.monotonic()
        async for taken in stream.noack_take(size, within=within):
            events = cast(Sequence[EventT[bytes]], taken)
            batch = [in_message(event) for event in events]
            started = time.monotonic()
            result = await batches.process(engine, batch, stop, retry_max_s, self.health)
            delivering = time.monotonic()
            if result is None or not await batches.deliver(result, engine, self._send, stop, retry_max_s):
                log.info("event=batch_abandoned pipeline=%s records=%d reason=stopping", self._label, len(batch))
                return
            acking = time.monotonic()
            for event in events:
                await stream.ack(event)
            # "consume" is the wait for the batch: Faust's fetch and per-event dispatch; "commit" the acks.
            result.stage_seconds.update(consume=started - waiting_since, deliver=acking - delivering,
                                        commit=time.monotonic() - acking)
            batches.account(self.stats, engine, batch, result, started)
            waiting_since = time.monotonic()

    async def _send(self, messages: list[OutMessage]) -> list[tuple[OutMessage, ProduceFailure]]:
        """Hand every message to Faust's producer, then wait for all the broker's acknowledgements; the messages
        refused (before sending, e.g. over the request size, or by the broker), each with its failure classified."""
        assert self.app is not None
        producer = self.app.producer
        failures: list[tuple[OutMessage, ProduceFailure]] = []
        sent: list[tuple[OutMessage, Awaitable[Any]]] = []
        for message in messages:
            try:
                future = await producer.send(
                    message.topic, message.key, message.value, partition=None, timestamp=None,
                    headers=message.headers,
                )
            except (ProducerSendError, KafkaError) as exc:
                failures.append((message, errors.from_exception(exc)))
                continue
            sent.append((message, future))
        outcomes = await asyncio.gather(*(future for _, future in sent), return_exceptions=True)
        for (message, _), outcome in zip(sent, outcomes, strict=True):
            if isinstance(outcome, Exception):
                failures.append((message, errors.from_exception(outcome)))
            elif isinstance(outcome, BaseException):
                raise outcome
        return failures


class _EmbeddedWorker(faust.Worker):
    """Faust's worker minus its signal handlers: the runner owns SIGTERM/SIGINT and stops this worker on `stop`,
    so `headwater up` and tests can run it inside their own event loop."""

    def install_signal_handlers(self) -> None:
        log.debug("event=faust_signals_left_to_runner")


def _status_pages(
    app: faust.App, ready: Callable[[], bool], reasons: Callable[[], list[str]], page: StatusPage,
) -> None:
    for path in STATUS_PATHS:
        @app.page(path, name=f"status_page{path}")
        async def status_page(view: View, request: Request) -> Response:
            return view.html(page.html)

    @app.page(STATUS_JSON)
    async def status_json(view: View, request: Request) -> Response:
        return view.json(await page.answer(), headers={"Cache-Control": "no-store"})

    @app.page("/metrics")
    async def metrics_page(view: View, request: Request) -> Response:
        body, content_type = endpoints.metrics_body()
        return view.bytes(body, headers={"Content-Type": content_type})  # aiohttp refuses a charset in content_type

    @app.page("/healthz")
    async def healthz_page(view: View, request: Request) -> Response:
        return view.json(endpoints.HEALTHY)

    @app.page("/readyz")
    async def readyz_page(view: View, request: Request) -> Response:
        answer, status = endpoints.readiness(ready(), reasons())
        return view.json(answer, status=status)


class FaustRuntime:
    """Runs pipelines as Faust apps in the running event loop until `stop` is set."""

    def __init__(
        self,
        configs: Sequence[PipelineConfig],
        settings: HeadwaterSettings,
        options: WorkerOptions | None = None,
        status_port: int | None = None,
        status_host: str = "127.0.0.1",
    ) -> None:
        self.options = options or WorkerOptions()
        self.pipelines = [FaustPipeline(config, settings, self.options) for config in configs]
        self.settings = settings
        self.status_port = status_port
        self.status_host = status_host

    def ready(self) -> bool:
        return all(pipeline.ready for pipeline in self.pipelines)

    def reasons(self) -> list[str]:
        return not_ready_reasons((pipeline.config.label, pipeline.health) for pipeline in self.pipelines)

    async def _prepare(self, stop: asyncio.Event) -> list[batches.Prepared] | None:
        """Broker and registry (with backoff) before any Faust service starts; /healthz answers meanwhile."""
        halt = threading.Event()
        relay = asyncio.create_task(_set_when(stop, halt))
        interim = endpoints.StatusServer(lambda: False, self.status_host, self.status_port) \
            if self.status_port is not None else None
        try:
            if interim is not None:
                self.status_port = await interim.start()
            return await asyncio.to_thread(
                lambda: [batches.prepare(p.config, self.settings, self.options, halt) for p in self.pipelines]
            )
        except DependencyDown:
            if stop.is_set():
                return None
            raise
        finally:
            relay.cancel()
            if interim is not None:
                await interim.stop()

    async def run(self, stop: asyncio.Event) -> list[WorkerStats]:
        prepared = await self._prepare(stop)
        if prepared is None:
            return [pipeline.stats for pipeline in self.pipelines]
        try:
            for ready in prepared:
                await ready.engine.start()
            with tempfile.TemporaryDirectory(prefix="headwater-faust-") as datadir:
                await self._serve(prepared, Path(datadir), stop)
        finally:
            for pipeline, ready in zip(self.pipelines, prepared, strict=True):
                pipeline.running = False
                await ready.engine.stop()
                ready.engine.close()
                batches.log_stopped(pipeline.config, pipeline.stats)
        for pipeline in self.pipelines:
            if pipeline.failed is not None:
                raise pipeline.failed
        return [pipeline.stats for pipeline in self.pipelines]

    async def _serve(self, prepared: list[batches.Prepared], datadir: Path, stop: asyncio.Event) -> None:
        # The interim server held the port until now; Faust's web server takes it over (StatusPortBusy if it went).
        host = self.status_host
        web_port = endpoints.usable_port(host, self.status_port) if self.status_port is not None else None
        apps = [
            pipeline.build(ready, datadir, stop, web_port if index == 0 else None, host)
            for index, (pipeline, ready) in enumerate(zip(self.pipelines, prepared, strict=True))
        ]
        if web_port is not None:
            _status_pages(apps[0], self.ready, self.reasons,
                          StatusPage("Headwater pipelines", registry_url=self.settings.registry.url))
            log.info("event=status_server_started url=http://%s:%d runtime=faust", host, web_port)
        worker = _EmbeddedWorker(
            apps[0], *apps[1:], loop=asyncio.get_running_loop(), quiet=True, override_logging=False,
            redirect_stdouts=False,
        )
        worker.spinner = None
        for pipeline in self.pipelines:
            pipeline.running = True
        running = asyncio.create_task(worker.start(), name="faust-worker")
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            stop.set()
            for pipeline in self.pipelines:
                pipeline.running = False
            try:
                await asyncio.wait_for(worker.stop(), SHUTDOWN_LIMIT_S)
            except TimeoutError:
                log.warning("event=faust_shutdown_timeout limit_s=%.0f", SHUTDOWN_LIMIT_S)
            await asyncio.wait({running}, timeout=SHUTDOWN_LIMIT_S)
        if running.done() and not running.cancelled() and running.exception() is not None:
            raise cast(BaseException, running.exception())
        if worker.crash_reason is not None:
            raise worker.crash_reason


async def _set_when(stop: asyncio.Event, halt: threading.Event) -> None:
    await stop.wait()
    halt.set()
