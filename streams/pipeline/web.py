"""Per-process HTTP endpoints: `/metrics` (Prometheus), `/healthz` (alive), `/readyz` (connected and assigned)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)


class StatusServer:
    def __init__(self, ready: Callable[[], bool], host: str = "127.0.0.1", port: int = 0) -> None:
        self.ready = ready
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _readyz(self, request: web.Request) -> web.Response:
        ready = self.ready()
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            # Several workers on one host share the default port's wish; the later ones take any free port.
            log.warning("event=status_port_busy port=%d error=%s fallback=any", self.port, exc.strerror)
            site = web.TCPSite(self._runner, self.host, 0)
            await site.start()
        server: Any = site._server
        sockets = server.sockets if server is not None else []
        self.port = sockets[0].getsockname()[1] if sockets else self.port
        log.info("event=status_server_started url=http://%s:%d", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
