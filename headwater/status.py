"""Per-process HTTP endpoints of every long-running Headwater process: `/metrics` (Prometheus), `/healthz` (alive),
`/readyz` (connected and assigned), and the status page (`/`, `/status`, `/status.json`; headwater.statuspage).

The answers are built here once; `StatusServer` serves them for the direct pipeline runtime and
`headwater connect run`, Faust's web server (`app.page`) for the Faust runtime.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from headwater.ports import free_port, port_bindable
from headwater.statuspage.page import StatusPage

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


class StatusPortBusy(RuntimeError):
    """The status port asked for is taken. Not silently replaced: a probe would check the wrong process."""

    def __init__(
        self,
        host: str,
        port: int,
        reason: str = "address already in use",
        what: str = "status port",
        hint: str = "pass another --status-port, or 0 for any free port",
    ) -> None:
        super().__init__(f"{what} {port} on {host} is not available ({reason}); {hint}")
        self.host = host
        self.port = port


def bind_failure(exc: OSError) -> str:
    """Why a listening socket could not be opened, in a few words (`address already in use`)."""
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)


def usable_port(host: str, port: int) -> int:
    """`port` when a server can listen on it, any free port when it is 0; StatusPortBusy when it is taken."""
    if port == 0:
        return free_port(host)
    if not port_bindable(port, host):
        raise StatusPortBusy(host, port)
    return port


class StatusServer:
    """/metrics, /healthz, /readyz and the status page on `host:port` (port 0: any free one); a busy port raises
    StatusPortBusy. The page lists the registry's subjects when `registry_url` is given; `page` replaces the page of
    this process (`headwater ui` serves one of a whole deployment)."""

    def __init__(
        self,
        ready: Callable[[], bool],
        host: str = "127.0.0.1",
        port: int = 0,
        reasons: Callable[[], Sequence[str]] = tuple,
        registry_url: str | None = None,
        title: str = "Headwater",
        page: StatusPage | None = None,
    ) -> None:
        self.ready = ready
        self.reasons = reasons
        self.host = host
        self.port = port
        self.page = page or StatusPage(title, registry_url=registry_url)
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
        self.page.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise StatusPortBusy(self.host, self.port, bind_failure(exc)) from None
        server: Any = site._server
        sockets = server.sockets if server is not None else []
        self.port = sockets[0].getsockname()[1] if sockets else self.port
        log.info("event=status_server_started url=http://%s:%d", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
