"""`headwater consume TOPIC`: a topic's records decoded, as JSON Lines on stdout (for pipes) or a table."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from headwater.api.consumption import ConsumedRecord, TopicNotFound, consume
from headwater.api.positions import PositionError
from streams.cli.options import (
    ConfigFile,
    bootstrap_servers_option,
    connection_settings,
    err,
    fail,
    registry_url_option,
)
from streams.runtime.tail import json_default

OutputFormat = Literal["jsonl", "table"]
OutputOption = typer.Option("jsonl", "--output", "-o", help="jsonl (one JSON object a line) or table.")


def _table(records: list[ConsumedRecord], with_headers: bool) -> Table:
    table = Table("partition", "offset", "key", "value", *(["lineage"] if with_headers else []))
    for record in records:
        shown = record.value if record.value is not None else record.error
        row = [str(record.partition), str(record.offset), record.key or "",
               escape(json.dumps(shown, default=json_default, ensure_ascii=False))]
        if with_headers:
            row.append(escape(" ".join(f"{k}={v}" for k, v in record.lineage.items())))
        table.add_row(*row)
    return table


def consume_command(
    topic: str = typer.Argument(..., help="Topic to read."),
    start: str = typer.Option("earliest", "--from", help="earliest, latest, a time (ISO-8601 or 15m/2h/7d ago), "
                                                          "or partition:offset pairs such as 0:120,1:95."),
    until: str = typer.Option("end", "--until", help="end (the end offsets when reading began) or a time."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep reading new records (ignores --until)."),
    group: str | None = typer.Option(None, "--group", "-g", help="Consumer group; its offsets are committed."),
    headers: bool = typer.Option(False, "--headers", help="Include the headers (lineage) of each record."),
    output: OutputFormat = OutputOption,
    max_records: int | None = typer.Option(None, "--max", "-n", help="Stop after this many records."),
    bootstrap_servers: str | None = bootstrap_servers_option(),
    registry_url: str | None = registry_url_option(),
    config: Path | None = ConfigFile,
) -> None:
    """Print a topic's records decoded through the registry, between two positions."""
    settings = connection_settings(config, bootstrap_servers, registry_url)
    try:
        reading = consume(topic, settings=settings, start=start, until="follow" if follow else until, group=group)
    except (TopicNotFound, PositionError) as exc:
        fail(f"{exc!s}", 2)
    shown: list[ConsumedRecord] = []
    count = 0
    try:
        with reading:
            if reading.planned == 0:
                err.print(f"no records in {topic} between {start} and {until}", highlight=False)
                return
            for record in reading:
                count += 1
                if output == "table":
                    shown.append(record)
                else:
                    sys.stdout.write(json.dumps(record.as_json(headers), default=json_default, ensure_ascii=False))
                    sys.stdout.write("\n")
                if max_records is not None and count >= max_records:
                    break
            sys.stdout.flush()
            if group is not None:
                reading.commit()
    except KeyboardInterrupt:
        return
    if output == "table":
        Console().print(_table(shown, headers))
