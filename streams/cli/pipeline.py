"""`headwater run`, `headwater tail`, `headwater up`: run pipelines, read topics, and the all-local demo."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from headwater import envelope
from headwater.dependencies import DependencyDown
from headwater.kafka.clients import KafkaConfigError
from headwater.kafka.python_clients import UnsupportedProperty, faust_broker_options
from headwater.status import StatusPortBusy
from streams.cli.options import (
    ConfigFile,
    LogFormat,
    LogFormatName,
    StartupTimeout,
    StatusHost,
    bootstrap_servers_option,
    connection_settings,
    err,
    fail,
    refuse_unusable_kafka,
    registry_url_option,
    status_port_option,
    use_log_format,
)
from streams.enrich.base import ProviderStartError
from streams.runtime.batches import WorkerOptions
from streams.runtime.config import PipelineConfig, PipelineConfigError, load_pipeline
from streams.runtime.dry_run import DryDeadLetter, DryOutput, DryRunError, dry_run
from streams.runtime.enrich_fields import EnrichFieldError
from streams.runtime.failures import PipelineFailed
from streams.runtime.processes import headwater_command, run_processes, worker_ports
from streams.runtime.runner import DEFAULT_RUNTIME, RuntimeName, run_workers
from streams.runtime.tail import render, tail

console = Console()

Pipelines = typer.Argument(..., help="Pipeline YAML files; one worker per pipeline in this process.")
RuntimeOption = typer.Option(
    DEFAULT_RUNTIME, "--runtime",
    help="direct (default): a confluent-kafka consume loop per pipeline taking micro-batches. faust: each pipeline "
         "is a faust-streaming app whose agent takes micro-batches. direct is the default because it is faster: "
         "Faust's consumer awaits one callback per message before a batch forms (measured on 2 cores by "
         "bench/pipeline.py: Faust at 0.33x direct without enrichment and quality, 0.78x with them; see README "
         "Performance). Same stages, delivery and headers on both.",
)
DryInput = typer.Option(None, "--input", help="Dry run: JSON Lines records of the pipeline's input topic.")
DryInputSchema = typer.Option(
    None, "--input-schema", help="Dry run: the input records' Avro schema (default: the catalog's for the topic)."
)
DataDir = typer.Option(Path(".headwater"), "--data-dir", "-d", help="Where broker, registry log and warehouse live.")


def run(
    pipelines: list[Path] = Pipelines,
    bootstrap_servers: str | None = bootstrap_servers_option(),
    registry_url: str | None = registry_url_option(),
    config: Path | None = ConfigFile,
    startup_timeout: float = StartupTimeout,
    log_format: LogFormatName = LogFormat,
    status_host: str = StatusHost,
    status_port: int = status_port_option(9464),
    session_timeout_ms: int = typer.Option(10_000, "--session-timeout-ms", help="Consumer group session timeout."),
    runtime: RuntimeName = RuntimeOption,
    dry_run: bool = typer.Option(False, "--dry-run", help="Run every stage on --input records, without a broker or "
                                                          "registry, print outputs and dead letters, and exit."),
    dry_input: Path | None = DryInput,
    dry_limit: int | None = typer.Option(None, "--limit", min=1, help="Dry run: at most this many records."),
    dry_schema: Path | None = DryInputSchema,
    strict: bool = typer.Option(False, "--strict", help="Dry run: exit 1 if any record is dead-lettered."),
    workers: int = typer.Option(
        1, "--workers", min=1,
        help="Worker processes of these pipelines on this host (one per core uses the machine); they share the "
             "input partitions as one consumer group. Worker i serves its status on --status-port + i.",
    ),
) -> None:
    """Run pipelines against a cluster until SIGTERM/Ctrl-C. Start more with the same files to share partitions."""
    use_log_format(log_format)
    try:
        configs = [load_pipeline(path) for path in pipelines]
    except PipelineConfigError as exc:
        fail(str(exc), 2)
    if dry_run:
        _dry_run(configs, dry_input, dry_limit, dry_schema, strict)
        return
    settings = connection_settings(config, bootstrap_servers, registry_url)
    refuse_unusable_kafka(settings.kafka, faust_broker_options if runtime == "faust" else None)
    if workers > 1:
        arguments = [str(path) for path in pipelines] + [
            "--runtime", runtime, "--startup-timeout", str(startup_timeout),
            "--session-timeout-ms", str(session_timeout_ms), "--status-host", status_host,
        ]
        arguments += ["--bootstrap-servers", bootstrap_servers] if bootstrap_servers else []
        arguments += ["--registry-url", registry_url] if registry_url else []
        arguments += ["--config", str(config)] if config else []
        raise typer.Exit(run_processes([
            headwater_command(["run", *arguments, "--status-port", str(port)])
            for port in worker_ports(status_port, workers)
        ]))
    options = WorkerOptions(session_timeout_ms=session_timeout_ms, startup_deadline_s=startup_timeout)
    try:
        stats = asyncio.run(run_workers(
            configs, settings, options, status_port=status_port, runtime=runtime, status_host=status_host
        ))
    except DependencyDown as exc:
        fail(f"{exc} (gave up after --startup-timeout {startup_timeout:g}s)")
    except EnrichFieldError as exc:
        fail(str(exc), 2)
    except (StatusPortBusy, KafkaConfigError, UnsupportedProperty, ProviderStartError) as exc:
        fail(str(exc))
    except PipelineFailed as exc:  # the bug's traceback is logged already; a supervisor restarts the worker
        fail(str(exc))
    for pipeline, result in zip(configs, stats, strict=True):
        console.print(
            f"{pipeline.label}: in {result.records_in}, out {result.records_out}, "
            f"dead-lettered {result.dead_lettered}"
        )


def _dry_run(configs: list[PipelineConfig], path: Path | None, limit: int | None, schema: Path | None,
             strict: bool) -> None:
    if path is None or len(configs) != 1:
        fail("--dry-run takes one pipeline file and --input SAMPLE.jsonl", 2)
    try:
        result = dry_run(configs[0], path, limit, schema)
    except (DryRunError, OSError, ValueError) as exc:
        fail(str(exc), 2)
    shown: list[DryOutput | DryDeadLetter] = sorted([*result.outputs, *result.dead_letters], key=lambda x: x.line)
    for item in shown:
        if isinstance(item, DryOutput):
            console.print(f"line {item.line} → {escape(render(item.record))}", highlight=False, soft_wrap=True)
        else:
            console.print(f"line {item.line} [red]dead letter[/red] stage={item.stage} "
                          f"class={escape(item.error_class)} reason={escape(item.reason)}",
                          highlight=False, soft_wrap=True)
    console.print(
        f"{configs[0].label} dry run: {result.records} records, {len(result.outputs)} out, "
        f"{len(result.dead_letters)} dead-lettered in {result.seconds:.1f}s; AI cost ${result.usd_per_million:,.2f} "
        "per million records", highlight=False,
    )
    if strict and result.dead_letters:
        raise typer.Exit(1)


def tail_command(
    topic: str = typer.Argument(..., help="Topic to read (enriched, raw or dead-letter)."),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Start at the oldest record."),
    max_records: int | None = typer.Option(None, "--max", "-n", help="Stop after this many records."),
    idle_timeout: float | None = typer.Option(None, "--idle-timeout", help="Stop after this many idle seconds."),
    bootstrap_servers: str | None = bootstrap_servers_option(),
    registry_url: str | None = registry_url_option(),
    config: Path | None = ConfigFile,
) -> None:
    """Print a topic's records decoded, and dead letters with their reasons."""
    settings = connection_settings(config, bootstrap_servers, registry_url)
    refuse_unusable_kafka(settings.kafka)
    shown = 0
    try:
        for item in tail(settings, topic, from_beginning, idle_timeout):
            if item.dead_letter:
                console.print(
                    f"[red]DLQ[/red] {item.headers.get(envelope.SOURCE, item.source)} key={item.key} "
                    f"stage={item.headers.get(envelope.ERROR_STAGE)} class={item.headers.get(envelope.ERROR_CLASS)} "
                    f"reason={escape(item.headers.get(envelope.ERROR_MESSAGE, ''))}",
                    highlight=False, soft_wrap=True,
                )
            elif item.record is not None:
                lineage = " ".join(
                    f"{name}={value}" for name, value in item.headers.items() if name.startswith("hw-")
                )
                console.print(f"{item.source} key={item.key} {escape(lineage)}", highlight=False, soft_wrap=True)
                console.print(escape(render(item.record)), highlight=False, soft_wrap=True)
            else:
                console.print(
                    f"{item.source} key={item.key} undecodable: {escape(item.error or 'no value')}", soft_wrap=True
                )
            shown += 1
            if max_records is not None and shown >= max_records:
                break
    except ValueError as exc:
        fail(str(exc), 2)
    except KeyboardInterrupt:
        return


def up_command(
    records: int = typer.Option(50_000, "--records", "-n", help="Sample events to produce (CRM + ERP)."),
    data_dir: Path = DataDir,
    seed: int = typer.Option(7, "--seed", help="Seed of the sample generator."),
    rate: float | None = typer.Option(None, "--rate", help="Produce the sample at this many records/s."),
    warehouse: bool = typer.Option(True, "--warehouse/--no-warehouse", help="Load the results into DuckDB."),
    runtime: RuntimeName = RuntimeOption,
    startup_timeout: float = StartupTimeout,
    log_format: LogFormatName = LogFormat,
    llm: bool = typer.Option(True, "--llm/--no-llm", help="Add the LLM step (intent, urgency) to crm_contacts, "
                                                          "answered by a local OpenAI-compatible fake."),
    status_host: str = StatusHost,
    status_port: int = status_port_option(9460),
    keep: bool = typer.Option(False, "--keep", help="Keep the status page, broker and registry up after the "
                                                    "summary, until Ctrl-C."),
) -> None:
    """Start broker and registry locally, run a messy sample through both pipelines, summarise, stop everything.

    It starts its own broker and registry on loopback, so it takes no connection options."""
    use_log_format(log_format)
    from streams.up import UpOptions, up

    try:
        up(UpOptions(data_dir=data_dir, records=records, seed=seed, rate=rate, warehouse=warehouse, runtime=runtime,
                     startup_timeout=startup_timeout, llm=llm, status_host=status_host, status_port=status_port,
                     keep=keep), console)
    except KeyboardInterrupt:
        err.print("interrupted; stopped everything `up` started")
        raise typer.Exit(130) from None
    except PipelineConfigError as exc:
        fail(str(exc), 2)
    except (RuntimeError, TimeoutError) as exc:
        # The broker, registry, a pipeline or the status page could not start (BrokerError, DependencyDown and
        # StatusPortBusy are RuntimeErrors).
        fail(str(exc))


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("tail")(tail_command)
    app.command("up")(up_command)
