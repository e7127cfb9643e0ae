"""A StatusServer on its own thread and event loop, for a process whose main thread blocks (`headwater up` loads the
warehouse synchronously and waits for Ctrl-C), so the status page answers through every phase."""

from __future__ import annotations

import asyncio
import threading

from headwater.status import StatusPortBusy, StatusServer


class StatusThread:
    def __init__(self, server: StatusServer) -> None:
        self.server = server
        self._bound = threading.Event()
        self._error: StatusPortBusy | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), name="status", daemon=True)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except StatusPortBusy as exc:
            self._error = exc
            return
        finally:
            self._bound.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.stop()

    def start(self) -> str:
        """The page's address once it listens; StatusPortBusy when its port is taken."""
        self._thread.start()
        self._bound.wait()
        if self._error is not None:
            raise self._error
        return f"http://{self.server.host}:{self.server.port}/"

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread.ident is not None:
            self._thread.join()
