"""The status page of one process or a deployment: `status.json` (the figures) and the HTML that polls it.

The HTML and its script are package data (`static/status.html`), one file with no outside references, so the page
works offline and needs no build step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import web

from headwater.statuspage.registry_view import RegistryView
from headwater.statuspage.samples import Sample, local_samples
from headwater.statuspage.snapshot import build_snapshot

STATUS_PATHS = ("/", "/status")
STATUS_JSON = "/status.json"


@dataclass(frozen=True)
class Scrape:
    """Samples read for one answer, and the processes they came from (whether each answered)."""

    samples: list[Sample]
    sources: list[dict[str, Any]] = field(default_factory=list)


async def this_process() -> Scrape:
    return Scrape(local_samples(), [{"url": "this process", "up": True}])


def page_html(title: str, interval_s: float) -> str:
    template = resources.files("headwater.statuspage").joinpath("static/status.html").read_text(encoding="utf-8")
    return template.replace("__TITLE__", title).replace("__INTERVAL_MS__", str(int(interval_s * 1000)))


class StatusPage:
    """Answers `status.json` from `scrape` (this process's registry by default) and the registry at
    `registry_url` when one is given."""

    def __init__(
        self,
        title: str,
        scrape: Callable[[], Awaitable[Scrape]] = this_process,
        registry_url: str | None = None,
        interval_s: float = 1.0,
    ) -> None:
        self.title = title
        self.scrape = scrape
        self.registry = RegistryView(registry_url) if registry_url else None
        self.interval_s = interval_s
        self.html = page_html(title, interval_s)

    async def answer(self) -> dict[str, Any]:
        if self.registry is not None:
            scrape, registry = await asyncio.gather(self.scrape(), self.registry.view())
        else:
            scrape, registry = await self.scrape(), None
        return {
            "title": self.title,
            "generated_at": time.time(),
            "interval_ms": int(self.interval_s * 1000),
            **build_snapshot(scrape.samples),
            "registry": registry,
            "sources": scrape.sources,
        }

    async def _json(self, request: web.Request) -> web.Response:
        return web.json_response(await self.answer(), headers={"Cache-Control": "no-store"})

    async def _html(self, request: web.Request) -> web.Response:
        return web.Response(text=self.html, content_type="text/html")

    def add_routes(self, app: web.Application) -> None:
        for path in STATUS_PATHS:
            app.router.add_get(path, self._html)
        app.router.add_get(STATUS_JSON, self._json)
