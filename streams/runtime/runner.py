"""Runs pipelines in this process until SIGTERM/SIGINT, on one of two runtimes with the status endpoints beside them.

- `direct` (default): one confluent-kafka consume loop per pipeline (`streams.runtime.worker`). It is the default
  because it is measured faster: Faust's consumer awaits a callback per message before a batch forms, which took
  the framework alone to 0.33x and the full pipeline to 0.78x of this loop (bench/pipeline.py, README).
- `faust`: each pipeline is a faust-streaming app whose agent batches events (`streams.runtime.faust_app`);
  supported and tested like `direct`, for teams that build on Faust.
Both run the same engine, deliver the same way (`streams.runtime.batches`) and commit only delivered input. A bug in
a stage stops every pipeline of the process (in-flight deliveries settled, nothing more committed) and raises
`PipelineFailed`, so `headwater run` exits non-zero and a supervisor restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from typing import Literal, Protocol

from headwater.openlineage import LineageEmitter
from headwater.settings import HeadwaterSettings
from headwater.status import StatusServer
from streams.runtime.batches import RunningPipeline, WorkerOptions, WorkerStats
from streams.runtime.config import PipelineConfig
from streams.runtime.failures import not_ready_reasons
from streams.runtime.faust_app import FaustRuntime
from streams.runtime.lineage_events import pipeline_runs
from streams.runtime.worker import PipelineWorker

log = logging.getLogger(__name__)
RuntimeName = Literal["faust", "direct"]
RUNTIMES: tuple[RuntimeName, ...] = ("faust", "direct")
DEFAULT_RUNTIME: RuntimeName = "direct"


class Runtime(Protocol):
    @property
    def pipelines(self) -> Sequence[RunningPipeline]: ...

    async def run(self, stop: asyncio.Event) -> list[WorkerStats]: ...


class DirectRuntime:
    """One `PipelineWorker` per pipeline, with a `StatusServer` when a status port is given."""

    def __init__(
        self,
        configs: Sequence[PipelineConfig],
        settings: HeadwaterSettings,
        options: WorkerOptions | None = None,
        status_port: int | None = None,
        status_host: str = "127.0.0.1",
    ) -> None:
        self.pipelines = [PipelineWorker(config, settings, options) for config in configs]
        self.settings = settings
        self.status_port = status_port
        self.status_host = status_host

    async def run(self, stop: asyncio.Event) -> list[WorkerStats]:
        workers = self.pipelines
        server = StatusServer(
            lambda: all(worker.ready for worker in workers), self.status_host, self.status_port,
            reasons=lambda: not_ready_reasons((worker.config.label, worker.health) for worker in workers),
            registry_url=self.settings.registry.url, title="Headwater pipelines",
        ) if self.status_port is not None else None
        if server is not None:
            await server.start()
        tasks = [asyncio.create_task(worker.run(stop), name=f"pipeline-{worker.config.name}") for worker in workers]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            stop.set()
            done = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            stop.set()
            if server is not None:
                await server.stop()
        failures = [result for result in done if isinstance(result, BaseException)]
        if failures:
            raise failures[0]
        return [result for result in done if isinstance(result, WorkerStats)]


def build_runtime(
    name: RuntimeName,
    configs: Sequence[PipelineConfig],
    settings: HeadwaterSettings,
    options: WorkerOptions | None = None,
    status_port: int | None = None,
    status_host: str = "127.0.0.1",
) -> Runtime:
    if name == "faust":
        return FaustRuntime(configs, settings, options, status_port, status_host)
    return DirectRuntime(configs, settings, options, status_port, status_host)


async def run_workers(
    configs: Sequence[PipelineConfig],
    settings: HeadwaterSettings,
    options: WorkerOptions | None = None,
    status_port: int | None = None,
    stop: asyncio.Event | None = None,
    runtime: RuntimeName = DEFAULT_RUNTIME,
    status_host: str = "127.0.0.1",
) -> list[WorkerStats]:
    """Run every pipeline until stopped (SIGTERM/SIGINT or `stop`); in-flight batches are drained and committed."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    log.info("event=runtime_starting runtime=%s pipelines=%d", runtime, len(configs))
    emitter = LineageEmitter(settings.openlineage)
    try:
        with emitter.reporting(pipeline_runs(configs, settings)):
            return await build_runtime(runtime, configs, settings, options, status_port, status_host).run(stop)
    finally:
        await asyncio.to_thread(emitter.close)
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
