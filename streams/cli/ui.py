"""`headwater ui`: one status page for a whole deployment, from the `/metrics` of the processes it is given (or of
the `headwater up` running in `--data-dir`)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from headwater.status import StatusPortBusy, StatusServer
from headwater.statuspage.page import StatusPage
from headwater.statuspage.targets import DEPLOYMENT_FILE, Targets, read_deployment
from streams.cli.options import (
    ConfigFile,
    StatusHost,
    bootstrap_servers_option,
    connection_settings,
    fail,
    registry_url_option,
    status_port_option,
)

console = Console()


async def _serve(server: StatusServer, processes: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    console.print(f"status page of {processes} processes on http://{server.host}:{server.port}/", highlight=False)
    try:
        await stop.wait()
    finally:
        await server.stop()


Processes: Any = typer.Argument(
    None, help="Processes to show: host:port or URL of each one's status port (its /metrics is scraped). "
               "None: the `headwater up` running in --data-dir.")
UpDataDir: Any = typer.Option(Path(".headwater"), "--data-dir", "-d",
                              help="Where a running `headwater up` says what it serves (without TARGETS).")


def ui(
    targets: list[str] | None = Processes,
    data_dir: Path = UpDataDir,
    interval: float = typer.Option(1.0, "--interval", min=0.2, help="Seconds between the page's updates."),
    config: Path | None = ConfigFile,
    bootstrap_servers: str | None = bootstrap_servers_option(used=False),
    registry_url: str | None = registry_url_option(),
    status_host: str = StatusHost,
    status_port: int = status_port_option(9470),
) -> None:
    """Serve one status page (and /metrics, /healthz, /readyz) for the processes of a deployment, until Ctrl-C."""
    urls = list(targets or [])
    discovered_registry = None
    if not urls:
        try:
            urls, discovered_registry = read_deployment(data_dir)
        except FileNotFoundError:
            fail(f"no processes to show: pass TARGETS, or start `headwater up` "
                 f"(it writes {data_dir / DEPLOYMENT_FILE})", 2)
        except ValueError as exc:
            fail(str(exc), 2)
    settings = connection_settings(config, bootstrap_servers, registry_url)
    registry = registry_url or discovered_registry or settings.registry.url
    scraped = Targets(urls)
    page = StatusPage("Headwater deployment", scrape=scraped.scrape, registry_url=registry, interval_s=interval)
    server = StatusServer(lambda: True, status_host, status_port, page=page)
    try:
        asyncio.run(_serve(server, len(urls)))
    except StatusPortBusy as exc:
        fail(str(exc))
