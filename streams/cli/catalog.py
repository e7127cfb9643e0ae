"""`headwater catalog`: every topic with its schemas, pipelines, connectors, size and retention, and the tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from streams import catalog
from streams.cli.lineage import ConnectorFiles, connectors_of
from streams.cli.options import ConfigFile, StartupTimeout, bootstrap_servers_option, fail, registry_url_option
from streams.cli.replay import connected
from streams.runtime.config import PipelineConfigError, load_pipeline

SHIPPED = Path(catalog.__file__).parent / "pipelines"
console = Console(soft_wrap=True, highlight=False)
PipelineFiles: Any = typer.Option(
    [], "--pipelines", help="Pipeline YAML files or directories (repeatable); the shipped pipelines are always read.",
)


def _pipeline_paths(given: list[Path]) -> list[Path]:
    paths = sorted(SHIPPED.glob("*.yaml"))
    for path in given:
        if not path.exists():
            fail(f"{path}: no such file or directory", 2)
        paths += sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    return paths


def _retention(retention: dict[str, str | None]) -> str:
    ms = retention.get("retention.ms")
    age = "forever" if ms == "-1" else f"{int(ms) / 3_600_000:g} h" if ms else "?"
    return f"{age}, {retention.get('cleanup.policy') or '?'}"


def _joined(items: list[str]) -> str:
    return ", ".join(items) or "-"


def render(found: dict[str, Any]) -> None:
    for item in found["topics"]:
        if item["internal"]:
            continue
        subjects = item["subjects"].items()
        schemas = _joined([f"{subject} v{','.join(map(str, versions))}" for subject, versions in subjects])
        console.print(f"[bold]{escape(item['topic'])}[/bold]  {item['records']:,} records in {item['partitions']} "
                      f"partitions, retention {escape(_retention(item['retention']))}")
        for label, text in (("schemas", schemas), ("read by", _joined(item["read_by"])),
                            ("written by", _joined(item["written_by"])), ("fed by", _joined(item["fed_by"])),
                            ("drained by", _joined(item["drained_by"])), ("tables", _joined(item["tables"]))):
            console.print(f"  {label:<11}{escape(text)}")
    for table in found["tables"]:
        console.print(f"[bold]table[/bold] {escape(table['namespace'])} {escape(table['table'])} <- "
                      f"{escape(table['source_topic'])} ({escape(table['connector'])})")


def catalog_command(
    as_json: bool = typer.Option(False, "--json", help="Print the catalog as JSON (internal topics included)."),
    pipeline_files: list[Path] = PipelineFiles,
    connector_files: list[Path] = ConnectorFiles,
    bootstrap_servers: str | None = bootstrap_servers_option(),
    registry_url: str | None = registry_url_option(),
    config_file: Path | None = ConfigFile,
    startup_timeout: float = StartupTimeout,
) -> None:
    """List every topic with its subjects and schema versions, the pipelines that read and write it, the
    connectors that feed or drain it, its record count and retention; and the warehouse tables with their topics."""
    try:
        pipelines = [load_pipeline(path) for path in _pipeline_paths(pipeline_files)]
    except PipelineConfigError as exc:
        fail(str(exc), 2)
    connectors = connectors_of(connector_files, sinks_only=False)
    settings = connected(config_file, bootstrap_servers, registry_url, startup_timeout)
    found = catalog.build(settings, catalog.Configured(pipelines, connectors))
    for connector in connectors:
        connector.close()
    if as_json:
        print(json.dumps(found, indent=2))
    else:
        render(found)
