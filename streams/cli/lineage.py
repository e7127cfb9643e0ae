"""`headwater lineage KEY|TRACE_ID`: a record's whole path, from its source connector to its warehouse row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from connectors.base import Connector, Sink
from connectors.runner import ConfigError, load_plan
from streams.cli.options import ConfigFile, StartupTimeout, bootstrap_servers_option, fail, registry_url_option
from streams.cli.replay import connected
from streams.lineage.trace import NotFound, trace

console = Console(soft_wrap=True, highlight=False)
ConnectorFiles: Any = typer.Option(
    [], "--connectors", help="`headwater connect run` config files whose sinks are searched for the record's row "
                             "(repeatable).",
)


def connectors_of(files: list[Path], sinks_only: bool = True) -> list[Connector[Any]]:
    """The sink connectors (or all connectors) of connect-run files; a bad file ends the command in one line."""
    found: list[Connector[Any]] = []
    for path in files:
        try:
            plan = load_plan(path)
        except ConfigError as exc:
            fail(str(exc), 2)
        found += [connector for connector in plan.connectors if isinstance(connector, Sink) or not sinks_only]
    return found


def _position(item: dict[str, Any]) -> str:
    return f"{item['topic']} partition {item['partition']} offset {item['offset']}"


def _enrichment(enrich: dict[str, Any]) -> str:
    steps = [f"{step.get('p')}" + (f" ({step['m']})" if step.get("m") else "") + (" cached" if step.get("c") else "")
             + (f" skipped: {step['skip']}" if step.get("skip") else "") for step in enrich["steps"]]
    return f"{', '.join(steps) or 'none'}; cost ${enrich['usd']:.6f}"


def line(label: str, text: str) -> None:
    console.print(f"[bold]{label:<12}[/bold]{escape(text)}")


def render(path: dict[str, Any]) -> None:
    line("trace", f"{path['trace_id'] or '(none)'}  (matched by {path['matched_by']} {path['query']})")
    source = path["source"]
    line("source", f"connector {source['connector']} cursor {source['cursor']}" if source["connector"]
         else "no hw-source header")
    raw = path["raw"]
    line("raw", f"{_position(raw)}, schema id {raw['schema_id']}")
    if not path["outcomes"]:
        line("pipeline", "not processed yet (no enriched record or dead letter names this raw record)")
    for outcome in path["outcomes"]:
        line("pipeline", f"{outcome['pipeline'] or '(unknown)'}")
        if outcome["kind"] == "dead_letter":
            line("dead letter", f"{_position(outcome)}: stage {outcome['stage']}, {outcome['error_class']}: "
                                f"{outcome['reason']} at {outcome['at']}")
            continue
        line("schemas", f"{outcome['schema_in']} -> {outcome['schema_out']}")
        line("enrich", _enrichment(outcome["enrich"]))
        line("quality", str(outcome["quality"]))
        line("enriched", _position(outcome) + (f" (replay {outcome['replay_run']})" if outcome["replay_run"] else ""))
    for sink in path["sinks"]:
        where = sink.get("table") or ", ".join(sink.get("objects", [])) or ""
        line("sink", f"{sink['connector']} {sink.get('namespace', '')} {where}: {sink['state']}")


def lineage_command(
    query: str = typer.Argument(..., help="Record key (its newest version) or hw-trace-id."),
    topic: str | None = typer.Option(None, "--topic", help="A topic of the record's <domain>.<entity> (any stage); "
                                                           "default: every raw topic."),
    as_json: bool = typer.Option(False, "--json", help="Print the path as JSON."),
    connector_files: list[Path] = ConnectorFiles,
    scan: int = typer.Option(100_000, "--scan", min=1, help="Records read from the end of each partition."),
    bootstrap_servers: str | None = bootstrap_servers_option(),
    registry_url: str | None = registry_url_option(used=False),
    config_file: Path | None = ConfigFile,
    startup_timeout: float = StartupTimeout,
) -> None:
    """Print a record's path: source connector and cursor, raw topic/partition/offset and schema id, pipeline
    version, enrichment and cost, quality verdict, enriched offset or dead letter and reason, and its sink row."""
    sinks = connectors_of(connector_files)
    settings = connected(config_file, bootstrap_servers, registry_url, startup_timeout)
    try:
        found = trace(settings.kafka, query, topic=topic, sinks=sinks, last=scan).as_dict()
    except NotFound as exc:
        fail(str(exc), 1)
    if as_json:
        print(json.dumps(found, indent=2))
    else:
        render(found)
