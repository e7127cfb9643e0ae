"""`headwater produce TOPIC [FILE|-]`: rows of a JSON Lines, CSV or Avro file to a topic, each validated against the
topic's schema; bad rows are reported with their line, field and reason."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from headwater import fields
from headwater.api.producer import DeliveryFailed, NoSchemaError, Producer, RecordInvalid
from headwater.api.rows import RowError, RowFormat, format_of, read_rows
from headwater.kafka.clients import KafkaConfigError
from streams.cli.options import (
    ConfigFile,
    bootstrap_servers_option,
    connection_settings,
    err,
    fail,
    registry_url_option,
)

SHOWN_ERRORS = 20


def _line_count(path: Path | None, row_format: RowFormat) -> int | None:
    """Lines of a text file (the bar's total), counted at C speed; None for standard input or Avro."""
    if path is None or row_format == "avro":
        return None
    with path.open("rb") as binary:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: binary.read(1 << 20), b""))


def _report(errors: list[RowError], total_bad: int) -> None:
    for error in errors:
        err.print(f"[red]rejected[/red] {escape(str(error))}", highlight=False)
    if total_bad > len(errors):
        err.print(f"... and {total_bad - len(errors)} more rejected rows", highlight=False)


SchemaFile = typer.Option(
    None, "--schema", help="Value schema (.avsc) instead of the subject's latest; registered under <topic>-value."
)
FormatOption = typer.Option(None, "--format", help="jsonl, csv or avro (default: from the file's suffix).")


def produce(
    topic: str = typer.Argument(..., help="Topic to write to; its schema is the subject <topic>-value's latest."),
    file: str = typer.Argument("-", help="JSON Lines (.jsonl), CSV (.csv) or Avro container (.avro); - for stdin."),
    schema: Path | None = SchemaFile,
    key_field: str | None = typer.Option(None, "--key-field", help="Record field (dotted path) used as the key."),
    row_format: RowFormat | None = FormatOption,
    all_or_nothing: bool = typer.Option(False, "--all-or-nothing", help="Send nothing if any row is bad."),
    bootstrap_servers: str | None = bootstrap_servers_option(),
    registry_url: str | None = registry_url_option(),
    config: Path | None = ConfigFile,
) -> None:
    """Produce the rows of a file to a topic, encoded with its registry schema."""
    path = None if file == "-" else Path(file)
    if path is not None and not path.is_file():
        fail(f"{file} does not exist", 2)
    if schema is not None and not schema.is_file():
        fail(f"schema file {schema!s} does not exist", 2)
    settings = connection_settings(config, bootstrap_servers, registry_url)
    try:
        kind = format_of(path, row_format)
        producer = Producer(settings, schemas={topic: schema} if schema else None, source="produce")
        value_schema = producer.schema(topic)
    except (NoSchemaError, KafkaConfigError, ValueError) as exc:
        fail(f"{exc!s}", 2)
    key_path = fields.split(key_field) if key_field else None
    origin = path.name if path is not None else "stdin"
    bad: list[RowError] = []
    bad_count = sent = 0
    started = time.monotonic()

    def encoded_rows() -> Iterator[tuple[int, bytes, str | None]]:
        nonlocal bad_count
        for row in read_rows(path, kind, value_schema, sys.stdin):
            error = row.error
            if error is None and row.value is not None:
                try:
                    value = producer.encode(topic, row.value)
                except RecordInvalid as invalid:
                    error = RowError(row.line, invalid.reason, invalid.field)
                else:
                    key = fields.get(row.value, key_path) if key_path else None
                    yield row.line, value, None if key is None else str(key)
                    continue
            bad_count += 1
            if error is not None and len(bad) < SHOWN_ERRORS:
                bad.append(error)

    progress = Progress(
        TextColumn("[bold]producing[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:,.0f} rows/s"), TimeRemainingColumn(), console=err, transient=True,
        disable=path is None or not err.is_terminal,
    )
    try:
        with progress:
            task = progress.add_task(origin, total=_line_count(path, kind), rate=0.0)
            rows: Iterator[tuple[int, bytes, str | None]] = encoded_rows()
            if all_or_nothing:
                checked = list(rows)
                if bad_count:
                    producer.close()
                    _report(bad, bad_count)
                    err.print(f"[red]nothing sent[/red]: {bad_count} of {bad_count + len(checked)} rows are bad "
                              "(--all-or-nothing)", highlight=False)
                    raise typer.Exit(1)
                rows = iter(checked)
            for line, value, key in rows:
                producer.send_encoded(topic, value, key, source=f"produce/{origin}:{line}")
                sent += 1
                if sent % 5000 == 0:
                    progress.update(task, completed=sent + bad_count, rate=sent / (time.monotonic() - started))
            producer.close()
    except DeliveryFailed as exc:
        fail(f"{exc!s}", 1)
    elapsed = time.monotonic() - started
    _report(bad, bad_count)
    err.print(
        f"produced {sent} rows to {topic} in {elapsed:.1f}s ({sent / elapsed if elapsed else 0:,.0f} rows/s); "
        f"rejected {bad_count}", highlight=False,
    )
    if bad_count:
        raise typer.Exit(1)
