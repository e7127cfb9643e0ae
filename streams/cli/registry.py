"""`headwater registry serve`: the Confluent-compatible schema registry stored in Kafka."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from pydantic import ValidationError

from headwater.auth.config import load_server_security
from headwater.dependencies import DependencyDown
from headwater.kafka.clients import KafkaConfigError
from headwater.kafka.python_clients import UnsupportedProperty, aiokafka_options
from headwater.settings import SettingsError, first_error
from headwater.status import StatusPortBusy
from schemas.registry.auth import AuthConfigError, load_users
from schemas.registry.config import DEFAULT_TOPIC, RegistryServerConfig
from schemas.registry.server import run
from streams.cli.options import (
    ConfigFile,
    LogFormat,
    LogFormatName,
    StartupTimeout,
    bootstrap_servers_option,
    connection_settings,
    fail,
    refuse_unusable_kafka,
    registry_url_option,
    use_log_format,
)

app = typer.Typer(help="The Confluent-compatible schema registry, stored in a Kafka topic.", no_args_is_help=True)
UsersFile = typer.Option(None, "--users-file", help="`user:password` lines; enables basic auth.")
AuthFile = typer.Option(
    None, "--auth-file", help="YAML with `auth` (API keys, OIDC, rate limit) and `tls` (certificate, key) sections."
)


@app.command()
def serve(
    port: int = typer.Option(8081, "--port", "-p", help="HTTP port (the API, /metrics, /healthz and /readyz)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: all)."),
    bootstrap_servers: str | None = bootstrap_servers_option(),
    registry_url: str | None = registry_url_option(used=False),
    config: Path | None = ConfigFile,
    startup_timeout: float = StartupTimeout,
    log_format: LogFormatName = LogFormat,
    topic: str = typer.Option(DEFAULT_TOPIC, "--topic", help="Single-partition compacted storage topic."),
    group: str = typer.Option(None, "--group", help="Consumer group electing the primary."),
    advertised_url: str = typer.Option(None, "--advertised-url", help="URL other registries forward writes to."),
    users_file: Path = UsersFile,
    auth_file: Path = AuthFile,
) -> None:
    """Serve the registry API until SIGTERM; reads and follows the storage topic, elects a primary for writes."""
    use_log_format(log_format)
    logging.getLogger("schemas").setLevel(min(logging.getLogger("streams").level, logging.INFO))
    settings = connection_settings(config, bootstrap_servers, registry_url)
    refuse_unusable_kafka(settings.kafka, aiokafka_options)
    try:
        security = load_server_security(auth_file) if auth_file else None
        server = RegistryServerConfig(
            kafka=settings.kafka,
            host=host,
            port=port,
            topic=topic,
            group=group,
            advertised_url=advertised_url,
            users_file=users_file,
            auth=security.auth if security else None,
            tls=security.tls if security else None,
            startup_timeout=startup_timeout,
        )
        load_users(server.users_file)
    except ValidationError as exc:
        fail(first_error(exc), 2)
    except (AuthConfigError, SettingsError) as exc:
        fail(str(exc), 2)
    try:
        run(server)
    except DependencyDown as exc:
        fail(f"{exc}; see --startup-timeout")
    except (StatusPortBusy, KafkaConfigError, UnsupportedProperty) as exc:
        fail(str(exc))
