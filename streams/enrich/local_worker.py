"""A child process for one local model, so a call that overruns its deadline cannot stall a pipeline.

A thread that runs over its timeout keeps running (Python cannot stop it), every later call queues behind it and the
worker no longer stops on SIGTERM. A process can be killed: `LocalWorker.call` is cancellable, and when the stage's
deadline cancels it mid-call the child is killed at once and a fresh one started, which loads the model again (once,
before its first call) while the next call is on its way. Calls go one at a time (one child per provider instance:
a local model uses a core fully, so calls in parallel would only take turns).

The parent never blocks on the child: it waits for an answer through the event loop's reader on the pipe. The child
exits on its own when the parent is gone (pipe closed or parent changed), even in the middle of a long call.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from streams.enrich.base import ProviderStartError, ProviderUnavailable

log = logging.getLogger(__name__)

ModelCall = Callable[[Any], Any]
"""What a model factory returns in the child: one call, from a picklable payload to a picklable answer."""
ModelFactory = Callable[[], ModelCall]
"""A picklable callable (a module-level class or function) that loads the model in the child."""

_CONTEXT = multiprocessing.get_context("spawn")  # no fork: the parent runs Kafka clients' threads
_PARENT_CHECK_SECONDS = 1.0
_STOP_GRACE_SECONDS = 1.0
LOAD_TIMEOUT_SECONDS = 120.0
"""How long `start()` waits for the model to load in the child before refusing to start."""


class LocalWorkerCrashed(RuntimeError):
    """The child died during a call (out of memory, a crash in native model code): that call's records fail."""


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_PARENT_CHECK_SECONDS)
    os._exit(1)


def _child_main(factory: ModelFactory, conn: Connection, parent: int) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"  # a local model never downloads, even if its directory names a hub repo
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()
    try:
        model = factory()
    except Exception as exc:  # any load failure is reported to the parent as a start error
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            payload = conn.recv()
        except EOFError:
            return
        try:
            answer = model(payload)
        except Exception as exc:  # the model's own error is the call's error, raised in the parent
            try:
                conn.send(("error", exc))
            except Exception:  # an exception that does not pickle travels as its text
                conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
            continue
        conn.send(("ok", answer))


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Child:
    """One started child process and the parent's end of its pipe."""

    def __init__(self, name: str, factory: ModelFactory) -> None:
        self.conn, child_end = _CONTEXT.Pipe(duplex=True)
        self.process: BaseProcess = _CONTEXT.Process(
            target=_child_main, args=(factory, child_end, os.getpid()), name=f"hw-enrich-{name}", daemon=True
        )
        self.process.start()
        child_end.close()
        self.ready = False

    async def receive(self) -> tuple[str, Any]:
        """The child's next message; `LocalWorkerCrashed` when it died instead."""
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()
        fd = self.conn.fileno()
        loop.add_reader(fd, _resolve, readable)
        try:
            await readable
        finally:
            loop.remove_reader(fd)
        try:
            message: tuple[str, Any] = self.conn.recv()
        except (EOFError, OSError):
            raise LocalWorkerCrashed(f"model process exited with code {self.process.exitcode}") from None
        return message

    def kill(self) -> None:
        self.process.kill()
        self.process.join(_STOP_GRACE_SECONDS)  # SIGKILL takes effect at once; this only reaps it
        self.conn.close()

    def stop(self) -> None:
        """Terminate, then kill if it did not go within the grace period."""
        self.process.terminate()
        self.process.join(_STOP_GRACE_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(_STOP_GRACE_SECONDS)
        self.conn.close()


class LocalWorker:
    """Runs one model's calls in a child process that is killed and replaced when a call is cancelled."""

    def __init__(self, name: str, factory: ModelFactory, load_timeout: float = LOAD_TIMEOUT_SECONDS) -> None:
        self.name = name
        self._factory = factory
        self._load_timeout = load_timeout
        self._child: _Child | None = None
        self._turn = asyncio.Lock()
        self._closed = False
        self.restarts = 0
        """Children killed for a call that overran (or crashed) and replaced: for tests and logs."""

    @property
    def pid(self) -> int | None:
        return self._child.process.pid if self._child else None

    async def start(self) -> None:
        """Start the child and wait for its model to load; `ProviderStartError` when it does not."""
        try:
            async with asyncio.timeout(self._load_timeout):
                await self._ready_child()
        except TimeoutError:
            await self.close()
            raise ProviderStartError(
                f"provider {self.name}: model did not load within {self._load_timeout:g}s"
            ) from None
        except LocalWorkerCrashed as exc:
            await self.close()
            raise ProviderStartError(f"provider {self.name}: model process died while loading: {exc}") from None

    async def _ready_child(self) -> _Child:
        if self._closed:
            raise ProviderUnavailable(self.name, "closed")
        if self._child is None:
            self._child = _Child(self.name, self._factory)
        child = self._child
        if not child.ready:
            try:
                kind, detail = await child.receive()
            except LocalWorkerCrashed:
                self._discard()
                raise
            if kind == "failed":
                self._discard()
                raise ProviderStartError(f"provider {self.name}: cannot load model: {detail}")
            child.ready = True
            log.info("event=local_model_ready provider=%s pid=%s", self.name, child.process.pid)
        return child

    def _discard(self) -> None:
        if self._child is not None:
            self._child.kill()
            self._child = None

    async def call(self, payload: Any) -> Any:
        """The model's answer to `payload`. Cancelling this (the stage's deadline) kills the child; the next call
        goes to a fresh one."""
        async with self._turn:
            child = await self._ready_child()
            child.conn.send(payload)
            try:
                kind, answer = await child.receive()
            except asyncio.CancelledError:
                self._replace("deadline")
                raise
            except LocalWorkerCrashed:
                self._replace("crashed")
                raise
        if kind == "error":
            raise answer
        return answer

    def _replace(self, why: str) -> None:
        """Kill the child (mid-call) and start its successor now, so it loads while the next call is coming."""
        self._discard()
        if self._closed:  # close() ended the call: nothing to replace
            return
        self.restarts += 1
        log.warning("event=local_model_killed provider=%s reason=%s restarts=%d", self.name, why, self.restarts)
        self._child = _Child(self.name, self._factory)

    async def close(self) -> None:
        """Stop the child promptly, whatever it is doing; a call in flight fails with `LocalWorkerCrashed`."""
        self._closed = True
        child, self._child = self._child, None
        if child is not None:
            await asyncio.to_thread(child.stop)
