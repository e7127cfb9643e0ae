"""Runs pipeline workers in this process until SIGTERM/SIGINT, with the status endpoints beside them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

from streams.pipeline.config import PipelineConfig
from streams.pipeline.web import StatusServer
from streams.pipeline.worker import PipelineWorker, WorkerOptions, WorkerStats
from streams.settings import HeadwaterSettings

log = logging.getLogger(__name__)


async def run_workers(
    configs: Sequence[PipelineConfig],
    settings: HeadwaterSettings,
    options: WorkerOptions | None = None,
    status_port: int | None = None,
    stop: asyncio.Event | None = None,
) -> list[WorkerStats]:
    """Run one worker per pipeline until stopped; each drains and commits its batch in flight first."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    workers = [PipelineWorker(config, settings, options) for config in configs]
    server = StatusServer(lambda: all(worker.ready for worker in workers), port=status_port) \
        if status_port is not None else None
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
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
    failures = [result for result in done if isinstance(result, BaseException)]
    if failures:
        raise failures[0]
    return [result for result in done if isinstance(result, WorkerStats)]
