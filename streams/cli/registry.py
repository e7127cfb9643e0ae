"""`headwater registry serve`: the Confluent-compatible schema registry stored in Kafka."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console

from headwater.settings import load_settings
from schemas.registry.auth import AuthConfigError, load_users
from schemas.registry.config import DEFAULT_TOPIC, RegistryServerConfig
from schemas.registry.server import run

app = typer.Typer(help="The Confluent-compatible schema registry, stored in a Kafka topic.", no_args_is_help=True)
err = Console(stderr=True)
UsersFile = typer.Option(None, "--users-file", help="`user:password` lines; enables basic auth.")
SettingsFile = typer.Option(None, "--config", "-c", help="Headwater settings YAML.")


@app.command()
def serve(
    port: int = typer.Option(8081, "--port", "-p", help="HTTP port."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    bootstrap: str = typer.Option(None, "--bootstrap", "-b", help="Kafka bootstrap servers (default from settings)."),
    topic: str = typer.Option(DEFAULT_TOPIC, "--topic", help="Single-partition compacted storage topic."),
    group: str = typer.Option(None, "--group", help="Consumer group electing the primary."),
    advertised_url: str = typer.Option(None, "--advertised-url", help="URL other registries forward writes to."),
    users_file: Path = UsersFile,
    settings_file: Path = SettingsFile,
) -> None:
    """Serve the registry API until SIGTERM; reads and follows the storage topic, elects a primary for writes."""
    logging.getLogger("schemas").setLevel(min(logging.getLogger("streams").level, logging.INFO))
    try:
        overrides = {"kafka": {"bootstrap.servers": bootstrap}} if bootstrap else {}
        settings = load_settings(settings_file, **overrides)
        config = RegistryServerConfig(
            kafka=settings.kafka,
            host=host,
            port=port,
            topic=topic,
            group=group,
            advertised_url=advertised_url,
            users_file=users_file,
        )
        load_users(config.users_file)
    except (ValidationError, AuthConfigError, FileNotFoundError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    run(config)
