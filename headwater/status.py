"""Per-process HTTP endpoints of every long-running Headwater process: `/metrics` (Prometheus), `/healthz` (alive),
`/readyz` (connected and assigned).

The answers are built here once; `StatusServer` serves them for the direct pipeline runtime and
`headwater connect run`, Faust's web server (`app.page`) for the Faust runtime.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from headwater.ports import free_port, port_bindable

log = logging.getLogger(__name__)
HEALTHY: dict[str, Any] = {"status": "alive"}


def metrics_body() -> tuple[bytes, str]:
    """The Prometheus exposition of this process and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST


def readiness(ready: bool, reasons: Sequence[str] = ()) -> tuple[dict[str, Any], int]:
    """The `/readyz` answer; `reasons` say why not (a dependency being waited for, a failure)."""
    answer: dict[str, Any] = {"ready": ready}
    if reasons:
        answer["reasons"] = list(reasons)
    return answer, 200 if ready else 503


def usable_port(host: str, port: int) -> int:
    """`port`, or any free port when it is 0 or taken (several workers on one host share the default wish)."""
    if port == 0:
        return free_port(host)
    if not port_bindable(port, host):
        log.warning("event=status_port_busy port=%d fallback=any", port)
        return free_port(host)
    return port


class StatusServer:
    def __init__(
        self,
        ready: Callable[[], bool],
        host: str = "127.0.0.1",
        port: int = 0,
        reasons: Callable[[], Sequence[str]] = tuple,
    ) -> None:
        self.ready = ready
        self.reasons = reasons
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = metrics_body()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response(HEALTHY)

    async def _readyz(self, request: web.Request) -> web.Response:
        answer, status = readiness(self.ready(), self.reasons())
        return web.json_response(answer, status=status)

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
