"""The processes `headwater ui` shows: their `/metrics` scraped together, and where `headwater up` says it serves."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import httpx

from headwater.statuspage.page import Scrape
from headwater.statuspage.samples import Sample, parse_exposition

log = logging.getLogger(__name__)
DEPLOYMENT_FILE = "status-targets.json"  # in `headwater up`'s data directory, while it runs


def metrics_url(target: str) -> str:
    """`host:port`, `http://host:port` or a full `.../metrics` URL, as the URL of the process's `/metrics`."""
    url = target if "://" in target else f"http://{target}"
    url = url.rstrip("/")
    return url if url.endswith("/metrics") else f"{url}/metrics"


class Targets:
    """Scrapes every target's `/metrics` at once; a target that does not answer is listed as down, not fatal."""

    def __init__(self, targets: list[str], timeout_s: float = 2.0) -> None:
        self.urls = [metrics_url(target) for target in targets]
        self.timeout_s = timeout_s

    async def _one(self, client: httpx.AsyncClient, url: str) -> tuple[list[Sample], dict[str, Any]]:
        try:
            response = await client.get(url)
            response.raise_for_status()
            return parse_exposition(response.text), {"url": url, "up": True}
        except (httpx.HTTPError, ValueError) as exc:
            log.info("event=status_target_down url=%s error=%s", url, type(exc).__name__)
            return [], {"url": url, "up": False, "error": type(exc).__name__}

    async def scrape(self) -> Scrape:
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            answers = await asyncio.gather(*(self._one(client, url) for url in self.urls))
        return Scrape([sample for samples, _ in answers for sample in samples], [source for _, source in answers])


def write_deployment(data_dir: Path, metrics_urls: list[str], registry_url: str | None) -> Path:
    """Where a running `headwater up` serves, for `headwater ui` to find without being told."""
    path = data_dir / DEPLOYMENT_FILE
    path.write_text(json.dumps({"metrics": metrics_urls, "registry_url": registry_url}), encoding="utf-8")
    return path


def read_deployment(data_dir: Path) -> tuple[list[str], str | None]:
    """The targets and registry a running `headwater up` wrote; FileNotFoundError when none runs there, ValueError
    when the file is not one it wrote."""
    path = data_dir / DEPLOYMENT_FILE
    answer = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(answer, dict) or not isinstance(answer.get("metrics"), list):
        raise ValueError(f"{path}: not a deployment written by `headwater up` (no `metrics` list)")
    registry_url = answer.get("registry_url")
    return [str(url) for url in answer["metrics"]], str(registry_url) if registry_url else None
