"""The registry's subjects and their versions for the status page, read over its REST API (Confluent's shape)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import quote

import httpx

log = logging.getLogger(__name__)


class RegistryView:
    """Subjects and versions of the registry at `url`, fetched at most every `refresh_s` seconds; when the registry
    does not answer, the page says so instead of failing."""

    def __init__(self, url: str, timeout_s: float = 2.0, refresh_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.refresh_s = refresh_s
        self._answer: dict[str, Any] | None = None
        self._fetched_at = -float("inf")
        self._lock = asyncio.Lock()

    async def _fetch(self) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.url, timeout=self.timeout_s) as client:
            response = await client.get("/subjects")
            response.raise_for_status()
            subjects = sorted(str(subject) for subject in response.json())
            versions = await asyncio.gather(*(client.get(f"/subjects/{quote(subject, safe='')}/versions")
                                              for subject in subjects))
        rows = []
        for subject, answer in zip(subjects, versions, strict=True):
            answer.raise_for_status()
            rows.append({"subject": subject, "versions": [int(version) for version in answer.json()]})
        return {"url": self.url, "reachable": True, "subjects": rows}

    async def view(self) -> dict[str, Any]:
        async with self._lock:
            if self._answer is None or time.monotonic() - self._fetched_at >= self.refresh_s:
                try:
                    self._answer = await self._fetch()
                except (httpx.HTTPError, ValueError) as exc:
                    log.info("event=status_registry_unreachable url=%s error=%s", self.url, type(exc).__name__)
                    self._answer = {"url": self.url, "reachable": False, "error": type(exc).__name__,
                                    "subjects": []}
                self._fetched_at = time.monotonic()
            return self._answer
