"""`headwater broker ...`: install, start, stop and inspect the embedded Kafka broker."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from streams.broker import KAFKA_VERSION, BrokerError, EmbeddedBroker, ensure_jars

app = typer.Typer(help=f"The embedded Apache Kafka {KAFKA_VERSION} broker (KRaft, one node).", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

DEFAULT_DATA_DIR = Path(".headwater/broker")
DataDir = typer.Option(DEFAULT_DATA_DIR, "--data-dir", "-d", help="Folder holding the broker's data and logs.")


def _fail(exc: BrokerError, log_file: Path | None = None) -> NoReturn:
    err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
    if log_file is not None and str(log_file) not in str(exc):
        err.print(f"broker log: {log_file}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def install() -> None:
    """Resolve the Kafka jars from Maven Central into the local cache (does nothing when present)."""
    try:
        libs = ensure_jars()
    except BrokerError as exc:
        _fail(exc)
    console.print(f"Kafka {KAFKA_VERSION} jars in {libs}")


@app.command()
def start(
    port: int = typer.Option(None, "--port", "-p", help="Client port (default 9092, or the last one used)."),
    data_dir: Path = DataDir,
) -> None:
    """Format storage on first use, start the broker in the background, wait until it answers."""
    broker = EmbeddedBroker(data_dir, port=port)
    try:
        status = broker.start()
    except BrokerError as exc:
        _fail(exc, broker.log_file)
    console.print(f"broker running (pid {status.pid}); bootstrap servers: {status.bootstrap}")
    console.print(f"log: {status.log_file}")


@app.command()
def stop(data_dir: Path = DataDir) -> None:
    """Stop the broker with SIGTERM and wait for its clean shutdown."""
    try:
        stopped = EmbeddedBroker(data_dir).stop()
    except BrokerError as exc:
        _fail(exc)
    console.print("broker stopped" if stopped else f"no broker is running for {data_dir.resolve()}")


@app.command()
def status(data_dir: Path = DataDir) -> None:
    """Say whether the broker runs, and where."""
    try:
        current = EmbeddedBroker(data_dir).status()
    except BrokerError as exc:
        _fail(exc)
    if current.running:
        console.print(f"running (pid {current.pid}) on {current.bootstrap}; log: {current.log_file}")
    else:
        console.print(f"not running (data dir {current.data_dir})")
