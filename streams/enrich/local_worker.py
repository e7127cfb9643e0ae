"""A child process for one local model, so a call that overruns its deadline cannot stall a pipeline.

A thread that runs over its timeout keeps running (Python cannot stop it), every later call queues behind it and the
worker no longer stops on SIGTERM. A process can be killed: `LocalWorker.call` is cancellable, and when the stage's
deadline cancels it mid-call the child is killed at once and a fresh one started, which loads the model again (once,
before its first call) while the next call is on its way. Each child takes one call at a time; a provider has as many
children as calls in flight (`concurrency`, 1 by default: a model process uses a core fully), so no call waits
behind another one's stuck call with its own deadline running.

Children are forked by a fork server (started once, without the parent's threads) that has imported the enrichment
providers already, so a replacement is ready in milliseconds plus its model's load, not the seconds a fresh
interpreter takes. The parent never blocks on a child: it waits for answers through the event loop's reader on the
pipe. A child exits on its own when the parent is gone, even in the middle of a long call.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from streams.enrich.base import ProviderStartError, ProviderUnavailable

log = logging.getLogger(__name__)

ModelCall = Callable[[Any], Any]
"""What a model factory returns in the child: one call, from a picklable payload to a picklable answer."""
ModelFactory = Callable[[], ModelCall]
"""A picklable callable (a module-level class or function) that loads the model in the child."""

_CONTEXT = multiprocessing.get_context("forkserver")  # never fork the parent itself: it runs Kafka clients' threads
# the main module (multiprocessing's default preload: children then skip importing it each) and every provider
_CONTEXT.set_forkserver_preload(["__main__", "streams.enrich"])
_PARENT_CHECK_SECONDS = 1.0
_STOP_GRACE_SECONDS = 1.0
LOAD_TIMEOUT_SECONDS = 120.0
"""How long `start()` waits for the model to load in the child before refusing to start."""


class ModelNotLoaded(ProviderUnavailable):
    """A model process could not load its model: at start a start error; later (files gone, a crash while loading)
    an outage, not the fault of the records waiting for it."""

    def __init__(self, provider: str, reason: str) -> None:
        super().__init__(provider, reason)
        self.reason = reason


class LocalWorkerCrashed(RuntimeError):
    """The child died during a call (out of memory, a crash in native model code): that call's records fail."""


def _exit_when_orphaned(parent: int) -> None:
    """The child's watchdog thread (its parent is the fork server, so it watches the pipeline process by pid)."""
    while True:
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(1)
        time.sleep(_PARENT_CHECK_SECONDS)


def _portable(exc: Exception) -> Exception:
    """The exception itself if it survives pickling both ways (so the parent can read it), else its text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def _child_main(factory: ModelFactory, conn: Connection, parent: int) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"  # a local model never downloads, even if its directory names a hub repo
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:  # the fork server imported it already, and it reads the variable once, at import
        vars(hub)["HF_HUB_OFFLINE"] = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group: the parent stops its children
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
            conn.send(("error", _portable(exc)))
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
        """Terminate, then kill if it did not go within the grace period. The pipe stays open: a call waiting on it
        must see its end (closing it from this thread could drop that event from the loop's selector)."""
        self.process.terminate()
        self.process.join(_STOP_GRACE_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(_STOP_GRACE_SECONDS)


@dataclass
class CallProgress:
    sent: bool = False
    """The payload reached a child with its model loaded."""


class LocalWorker:
    """Runs one model's calls in child processes (`processes` of them, one call each at a time); a child whose call
    is cancelled is killed and replaced."""

    def __init__(
        self, name: str, factory: ModelFactory, processes: int = 1, load_timeout: float = LOAD_TIMEOUT_SECONDS
    ) -> None:
        self.name = name
        self._factory = factory
        self._processes = processes
        self._load_timeout = load_timeout
        self._slots = asyncio.Semaphore(processes)
        self._idle: list[_Child] = []
        """Children not in a call: ready, or still loading their model."""
        self._busy: set[_Child] = set()
        self._closed = False
        self.restarts = 0
        """Children killed for a call that overran (or crashed) and replaced: for tests and logs."""

    @property
    def pids(self) -> list[int | None]:
        return [child.process.pid for child in [*self._idle, *self._busy]]

    async def start(self) -> None:
        """Start every child and wait for their models to load; `ProviderStartError` when one does not."""
        try:
            async with asyncio.timeout(self._load_timeout):
                children = await asyncio.gather(*(self._checkout() for _ in range(self._processes)))
        except TimeoutError:
            await self.close()
            raise ProviderStartError(
                f"provider {self.name}: model did not load within {self._load_timeout:g}s"
            ) from None
        except ModelNotLoaded as exc:
            await self.close()
            raise ProviderStartError(f"provider {self.name}: {exc.reason}") from None
        for child in children:
            self._checkin(child)

    async def _checkout(self) -> _Child:
        """An idle child with its model loaded (a new one if none is idle)."""
        if self._closed:
            raise ProviderUnavailable(self.name, "closed")
        # an idle child has nothing to say: a readable pipe means it died (the OOM killer, an operator)
        while self._idle and self._idle[-1].ready and self._idle[-1].conn.poll():
            self._idle.pop().kill()
        if self._idle:
            child = self._idle.pop()
        else:
            # the first child waits for the fork server to start and import the providers: not on the event loop
            child = await asyncio.to_thread(_Child, self.name, self._factory)
            if self._closed:  # close() ran meanwhile and could not see it
                await asyncio.to_thread(child.stop)
                child.conn.close()
                raise ProviderUnavailable(self.name, "closed")
        self._busy.add(child)
        if not child.ready:
            try:
                kind, detail = await child.receive()
            except asyncio.CancelledError:
                self._checkin(child)  # still loading: the next call gets it
                raise
            except LocalWorkerCrashed as exc:
                self._discard(child)
                raise ModelNotLoaded(self.name, f"model process died while loading: {exc}") from None
            if kind == "failed":
                self._discard(child)
                raise ModelNotLoaded(self.name, f"cannot load model: {detail}")
            child.ready = True
            log.info("event=local_model_ready provider=%s pid=%s", self.name, child.process.pid)
        return child

    def _checkin(self, child: _Child) -> None:
        self._busy.discard(child)
        if not self._closed:
            self._idle.append(child)

    def _discard(self, child: _Child) -> None:
        self._busy.discard(child)
        child.kill()

    async def call(self, payload: Any, progress: CallProgress | None = None) -> Any:
        """The model's answer to `payload`. Cancelling this (the stage's deadline) kills the child running it; the
        next call goes to another one. `progress` tells a caller whose deadline passed whether the model had
        started on its payload or was still loading."""
        async with self._slots:
            child = await self._checkout()
            if progress is not None:
                progress.sent = True
            try:
                child.conn.send(payload)
                kind, answer = await child.receive()
            except asyncio.CancelledError:
                self._replace(child, "deadline")
                raise
            except LocalWorkerCrashed:
                self._replace(child, "crashed")
                raise
            except OSError as exc:  # the pipe broke as the payload was sent
                self._replace(child, "crashed")
                raise LocalWorkerCrashed(f"model process is gone: {exc}") from None
            self._checkin(child)
        if kind == "error":
            raise answer
        return answer

    def _replace(self, child: _Child, why: str) -> None:
        """Kill a child mid-call and start its successor now, so it loads while the next call is coming."""
        self._discard(child)
        if self._closed:  # close() ended the call: nothing to replace
            return
        self.restarts += 1
        log.warning("event=local_model_killed provider=%s reason=%s restarts=%d", self.name, why, self.restarts)
        self._idle.append(_Child(self.name, self._factory))

    async def close(self) -> None:
        """Stop every child promptly, whatever it is doing; a call in flight fails with `LocalWorkerCrashed`."""
        self._closed = True
        idle, busy = list(self._idle), list(self._busy)
        self._idle.clear()
        self._busy.clear()
        await asyncio.gather(*(asyncio.to_thread(child.stop) for child in [*idle, *busy]))
        for child in idle:  # a busy child's pipe is closed by its call, once it has read the end
            child.conn.close()

