"""The options every command shares, defined once: how to reach Kafka and the registry, how long to wait for them
at start-up, where the status endpoints listen; and the one-line error every command ends with.

Every command that talks to Kafka or the registry takes the same three connection options, so one set of flags
works everywhere (a command that does not use one of them says so in its help). Values follow ARCHITECTURE.md's
precedence: flag > environment `HEADWATER_<SECTION>__<KEY>` > `--config` file > default.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from headwater import logs
from headwater.kafka import clients
from headwater.kafka.clients import KafkaConfigError
from headwater.kafka.python_clients import UnsupportedProperty
from headwater.settings import HeadwaterSettings, KafkaSettings, SettingsError, load_settings

err = Console(stderr=True, soft_wrap=True)

DEFAULT_STARTUP_TIMEOUT_S = 300.0
_UNUSED = " Not used by this command; accepted so one set of flags works for every command."


def bootstrap_servers_option(used: bool = True) -> Any:
    return typer.Option(
        None, "--bootstrap-servers",
        help=f"Kafka bootstrap servers, host:port[,host:port] (overrides settings).{'' if used else _UNUSED}",
    )


def registry_url_option(used: bool = True) -> Any:
    return typer.Option(
        None, "--registry-url", help=f"Schema registry URL (overrides settings).{'' if used else _UNUSED}"
    )


ConfigFile: Any = typer.Option(
    None, "--config", "-c",
    help="Settings YAML with `kafka` (any librdkafka property) and `registry` sections.",
)
StartupTimeout: Any = typer.Option(
    DEFAULT_STARTUP_TIMEOUT_S, "--startup-timeout", min=0.1,
    help="Seconds to wait for the broker and registry at start-up; then exit 1 with the reason.",
)
StatusHost: Any = typer.Option(
    "127.0.0.1", "--status-host",
    help="Interface of the status page, /metrics, /healthz, /readyz (0.0.0.0: all, e.g. for container probes).",
)



class LogFormatName(StrEnum):
    text = "text"
    json = "json"


LogFormat: Any = typer.Option(
    LogFormatName.text, "--log-format", envvar="HEADWATER_LOG_FORMAT", case_sensitive=False,
    help="Log lines as `key=value` text or one JSON object per line (for a log collector).",
)


def use_log_format(log_format: LogFormatName) -> None:
    logs.use_log_format("json" if log_format is LogFormatName.json else "text")


def status_port_option(default: int) -> Any:
    return typer.Option(
        default, "--status-port", min=0, max=65535,
        help="Port of the status page, /metrics, /healthz, /readyz; 0: any free port. A busy port is an error: "
             "several workers on one host each need their own port (or 0).",
    )


def fail(message: str, code: int = 1) -> NoReturn:
    """End the command with one line on stderr and a non-zero exit code."""
    err.print(f"[red]error:[/red] {escape(' '.join(message.split()))}", highlight=False)
    raise typer.Exit(code)


def connection_settings(
    config: Path | None, bootstrap_servers: str | None, registry_url: str | None
) -> HeadwaterSettings:
    """The command's settings, the flags over environment over file; a bad value ends the command in one line."""
    overrides: dict[str, Any] = {}
    if bootstrap_servers:
        overrides["kafka"] = {"bootstrap.servers": bootstrap_servers}
    if registry_url:
        overrides["registry"] = {"url": registry_url}
    try:
        return load_settings(config, **overrides)
    except SettingsError as exc:
        fail(str(exc), 2)


def refuse_unusable_kafka(
    kafka: KafkaSettings, python_client: Callable[[KafkaSettings], object] | None = None
) -> None:
    """Refuse, before anything starts, properties librdkafka rejects (unknown name, bad value) and, when the command
    also uses a pure-Python client (`python_client` maps the settings for it: aiokafka, Faust), properties that client
    cannot honour. The one line names the property."""
    try:
        clients.admin(kafka, log_level=0)  # built only to validate; log_level 0: no librdkafka lines on stderr
        if python_client is not None:
            python_client(kafka)
    except (KafkaConfigError, UnsupportedProperty) as exc:
        fail(str(exc), 2)
