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
from headwater.dependencies import DependencyDown
from headwater.kafka.clients import KafkaConfigError
from headwater.settings import read_settings_file
from headwater.status import StatusPortBusy
from streams.cli.options import (
    ConfigFile,
    LogFormat,
    LogFormatName,
    StartupTimeout,
    StatusHost,
    bootstrap_servers_option,
    connection_settings,
    fail,
    refuse_unusable_kafka,
    registry_url_option,
    status_port_option,
    use_log_format,
)

app = typer.Typer(
    help="Source and sink connectors (CRMs, ERPs, webhooks -> Kafka -> warehouse, S3).", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)
# A ready config file per connector, in the repository's examples/connect/ (tests/test_examples.py keeps it true).
EXAMPLES = {
    "duckdb": "duckdb-sink.yaml", "hubspot": "hubspot.yaml", "postgres": "postgres-sink.yaml", "s3": "s3-sink.yaml",
    "salesforce": "salesforce-to-kafka.yaml", "sql": "sql-erp.yaml", "webhook": "webhook.yaml",
}
ConfigFiles = typer.Argument(..., help="Config YAML files; every file is validated before any starts.")


@app.command()
def run(
    configs: list[Path] = ConfigFiles,
    bootstrap_servers: str | None = bootstrap_servers_option(),
    registry_url: str | None = registry_url_option(),
    config: Path | None = ConfigFile,
    startup_timeout: float = StartupTimeout,
    log_format: LogFormatName = LogFormat,
    status_host: str = StatusHost,
    status_port: int = status_port_option(9465),
) -> None:
    """Run the connectors of CONFIG files until interrupted (SIGINT/SIGTERM stop them cleanly).

    Kafka and registry settings: flags > HEADWATER_* environment > a CONFIG file's own sections > --config file."""
    use_log_format(log_format)
    overrides: dict[str, Any] = {}
    if bootstrap_servers:
        overrides["kafka"] = {"bootstrap.servers": bootstrap_servers}
    if registry_url:
        overrides["registry"] = {"url": registry_url}
    shared: dict[str, Any] = {}
    if config is not None:
        connection_settings(config, None, None)  # a bad --config file is named as such, not as the CONFIG file
        shared = read_settings_file(config)
    try:
        plans = [load_plan(path, overrides, shared) for path in configs]
    except ConfigError as exc:
        fail(str(exc), 2)
    for plan in plans:
        refuse_unusable_kafka(plan.settings.kafka)
    connector_log = logging.getLogger("connectors")
    if connector_log.getEffectiveLevel() > logging.INFO:
        connector_log.setLevel(logging.INFO)
    runner = Runner(plans, status_port=status_port, status_host=status_host, startup_timeout_s=startup_timeout)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: runner.stop.set())
    names = ", ".join(c.name for plan in plans for c in plan.connectors)
    err.print(f"running {names}", highlight=False)
    try:
        runner.run()
    except DependencyDown as exc:
        fail(f"{exc} (gave up after --startup-timeout {startup_timeout:g}s)")
    except (StatusPortBusy, KafkaConfigError) as exc:
        fail(str(exc))
    if runner.failures:
        for failure in runner.failures:
            err.print(f"[red]error:[/red] {failure}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


@app.command("list")
def list_connectors() -> None:
    """Show every connector, the fields of its config and its ready config file in the repository's examples/."""
    for name, cls in available().items():
        table = Table(
            title=f"{name} ({cls.kind}) — {(cls.__doc__ or '').strip().splitlines()[0]}", title_justify="left"
        )
        for column in ("field", "type", "default", "description"):
            table.add_column(column, overflow="fold")
        for field in describe(cls):
            table.add_row(field.name, field.type, "required" if field.required else field.default, field.description)
        table.caption = f"ready config: examples/connect/{EXAMPLES[name]}" if name in EXAMPLES else None
        table.caption_justify = "left"
        console.print(table)
