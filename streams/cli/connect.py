"""`headwater connect ...`: run source and sink connectors from config files, list the available ones."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from connectors.connector_index import available, describe
from connectors.runner import ConfigError, Runner, load_plan

app = typer.Typer(
    help="Source and sink connectors (CRMs, ERPs, webhooks -> Kafka -> warehouse, S3).", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)
ConfigFiles = typer.Argument(..., help="Config YAML files; every file is validated before any starts.")


@app.command()
def run(
    configs: list[Path] = ConfigFiles,
    bootstrap_servers: str = typer.Option(None, "--bootstrap-servers", help="Kafka bootstrap servers (overrides)."),
    registry_url: str = typer.Option(None, "--registry-url", help="Schema registry URL (overrides)."),
    status_port: int = typer.Option(
        9465, "--status-port", help="Port of /metrics, /healthz, /readyz (0: any free port; a busy one falls back)."
    ),
) -> None:
    """Run the connectors of CONFIG files until interrupted (SIGINT/SIGTERM stop them cleanly)."""
    overrides: dict[str, Any] = {}
    if bootstrap_servers:
        overrides["kafka"] = {"bootstrap_servers": bootstrap_servers}
    if registry_url:
        overrides["registry"] = {"url": registry_url}
    try:
        plans = [load_plan(path, overrides) for path in configs]
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    connector_log = logging.getLogger("connectors")
    if connector_log.getEffectiveLevel() > logging.INFO:
        connector_log.setLevel(logging.INFO)
    runner = Runner(plans, status_port=status_port)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: runner.stop.set())
    names = ", ".join(c.name for plan in plans for c in plan.connectors)
    err.print(f"running {names}", highlight=False)
    runner.run()
    if runner.failures:
        for failure in runner.failures:
            err.print(f"[red]error:[/red] {failure}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


@app.command("list")
def list_connectors() -> None:
    """Show every connector and the fields of its config."""
    for name, cls in available().items():
        table = Table(
            title=f"{name} ({cls.kind}) — {(cls.__doc__ or '').strip().splitlines()[0]}", title_justify="left"
        )
        for column in ("field", "type", "default", "description"):
            table.add_column(column, overflow="fold")
        for field in describe(cls):
            table.add_row(field.name, field.type, "required" if field.required else field.default, field.description)
        console.print(table)
