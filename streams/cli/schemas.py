"""`headwater schemas register|check`: publish Headwater's .avsc files to the registry, or dry-run it for CI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console

from headwater.settings import RegistrySettings
from schemas.catalog import SCHEMA_DIR
from schemas.publish import Outcome, RegistryUnreachable, check_all, register_all
from streams.cli.options import ConfigFile, bootstrap_servers_option, connection_settings, registry_url_option

app = typer.Typer(help="Headwater's Avro schemas (.avsc) and their registry subjects.", no_args_is_help=True)
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

SchemaDir = typer.Option(SCHEMA_DIR, "--dir", "-d", help="Folder of <domain>/<entity>[_enriched].avsc files.")


def _run(
    action: Callable[[RegistrySettings, Path], list[Outcome]], settings: RegistrySettings, directory: Path
) -> None:
    if not directory.is_dir():
        err.print(f"[red]error:[/red] schema folder {directory} does not exist", highlight=False)
        raise typer.Exit(1)
    try:
        outcomes = action(settings, directory)
    except RegistryUnreachable as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    if not outcomes:
        err.print(f"[red]error:[/red] no .avsc files under {directory}", highlight=False)
        raise typer.Exit(1)
    for outcome in outcomes:
        line = f"{outcome.entry.subject}  {outcome.entry.path.name}  {outcome.detail}"
        if outcome.ok:
            console.print(f"ok    {line}", highlight=False)
        else:
            err.print(f"FAIL  {line}", highlight=False)
    if not all(outcome.ok for outcome in outcomes):
        raise typer.Exit(1)


@app.command()
def register(
    directory: Path = SchemaDir,
    bootstrap_servers: str | None = bootstrap_servers_option(used=False),
    registry_url: str | None = registry_url_option(),
    config: Path | None = ConfigFile,
) -> None:
    """Register every .avsc under its subject; exit 1 with the reason when one is invalid or incompatible."""
    _run(register_all, connection_settings(config, bootstrap_servers, registry_url).registry, directory)


@app.command()
def check(
    directory: Path = SchemaDir,
    bootstrap_servers: str | None = bootstrap_servers_option(used=False),
    registry_url: str | None = registry_url_option(),
    config: Path | None = ConfigFile,
) -> None:
    """Dry run of `register` for CI: validity and compatibility of every .avsc, nothing registered."""
    _run(check_all, connection_settings(config, bootstrap_servers, registry_url).registry, directory)
