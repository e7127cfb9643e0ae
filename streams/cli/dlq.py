"""`headwater dlq summary|show|replay`: the dead-letter repair loop."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from headwater.api.positions import PositionError, parse_time
from headwater.kafka import clients
from schemas.client import registry_client
from schemas.serde import AvroDeserializer, SerdeError
from streams.cli.options import ConfigFile, StartupTimeout, bootstrap_servers_option, fail, registry_url_option
from streams.cli.replay import Into, connected, run_with_progress
from streams.dlq.letters import Selection, read
from streams.dlq.rerun import admit_selected
from streams.dlq.summary import summarise
from streams.replay.plan import PlanError, check_run_id, new_run_id, plan_whole
from streams.replay.run import side_topics
from streams.replay.state import ReplayState
from streams.runtime.config import PipelineConfigError, load_pipeline
from streams.runtime.tail import json_default

app = typer.Typer(no_args_is_help=True, help="Dead letters: what failed and why, and re-running them after a fix.")
console = Console()
DlqPipeline = typer.Argument(..., help="Pipeline YAML file whose dead letters are re-run (its current version).")
DlqIntoOption = typer.Option("live", "--into", help="live (default): what passes goes to the enriched topic; "
                                                    "side: to <domain>.<entity>.backfill.<run>.")


def _enriched_of(dlq_topic: str) -> str:
    parts = dlq_topic.split(".")
    return ".".join([*parts[:2], "enriched"]) if len(parts) >= 3 else f"{dlq_topic}.enriched"


def _selection(stage: str | None, error_class: str | None, reason: str | None, since: str | None,
               until: str | None) -> Selection:
    try:
        return Selection(stage, error_class, reason, parse_time(since) if since else None,
                         parse_time(until) if until else None)
    except PositionError as exc:
        fail(str(exc), 2)


@app.command("summary")
def summary_command(
    topic: str = typer.Argument(..., help="Dead-letter topic, e.g. crm.contacts.dlq."),
    enriched: str | None = typer.Option(None, "--enriched", help="Where resolved records land (default: "
                                                                  "<domain>.<entity>.enriched)."),
    bootstrap_servers: str | None = bootstrap_servers_option(),
    registry_url: str | None = registry_url_option(),
    config_file: Path | None = ConfigFile,
    startup_timeout: float = StartupTimeout,
) -> None:
    """Count dead letters by stage, class and reason, and by hour, with sample keys and how many were resolved."""
    settings = connected(config_file, bootstrap_servers, registry_url, startup_timeout)
    found = summarise(settings, topic, enriched or _enriched_of(topic))
    console.print(f"{topic}: {found.total:,} dead letters, {found.resolved:,} resolved by a DLQ replay",
                  highlight=False)
    table = Table("stage", "class", "reason", "count", "sample keys")
    for (stage, error_class, reason), count in found.by_reason.most_common():
        table.add_row(stage, escape(error_class), escape(reason), f"{count:,}",
                      escape(", ".join(found.samples[(stage, error_class, reason)])))
    console.print(table)
    hours = Table("hour (UTC)", "count")
    for hour, count in sorted(found.by_hour.items()):
        hours.add_row(hour, f"{count:,}")
    console.print(hours)


@app.command("show")
def show_command(
    topic: str = typer.Argument(..., help="Dead-letter topic."),
    stage: str | None = typer.Option(None, "--stage", help="Only this stage (decode, transform, enrich, ...)."),
    error_class: str | None = typer.Option(None, "--class", help="Only this error class."),
    reason: str | None = typer.Option(None, "--reason", help="Only reasons containing this text."),
    since: str | None = typer.Option(None, "--since", help="Only dead letters from this time on."),
    limit: int | None = typer.Option(None, "--max", "-n", help="Show at most this many."),
    bootstrap_servers: str | None = bootstrap_servers_option(),
    registry_url: str | None = registry_url_option(),
    config_file: Path | None = ConfigFile,
    startup_timeout: float = StartupTimeout,
) -> None:
    """Each dead letter with its reason and the original, decoded where it decodes."""
    settings = connected(config_file, bootstrap_servers, registry_url, startup_timeout)
    decoder = AvroDeserializer(registry_client(settings.registry))
    shown = 0
    for letter in read(settings, topic, _selection(stage, error_class, reason, since, None)):
        try:
            original: object = decoder.decode(letter.value) if letter.value is not None else None
        except SerdeError as exc:
            original = f"(does not decode: {exc})"
        key = (letter.key or b"").decode("utf-8", "replace")
        console.print(f"[red]{escape(letter.position)}[/red] key={escape(key)} source={escape(letter.source)} "
                      f"stage={letter.stage} class={escape(letter.error_class)} at={letter.headers.get('hw-error-at')}",
                      highlight=False, soft_wrap=True)
        console.print(f"  reason: {escape(letter.reason)}", highlight=False, soft_wrap=True)
        console.print(f"  original: {escape(json.dumps(original, default=json_default, ensure_ascii=False))}",
                      highlight=False, soft_wrap=True)
        shown += 1
        if limit is not None and shown >= limit:
            break
    if shown == 0:
        console.print(f"no dead letters in {topic} match", highlight=False)


@app.command("replay")
def replay_command(
    pipeline: Path = DlqPipeline,
    stage: str | None = typer.Option(None, "--stage", help="Only this stage."),
    error_class: str | None = typer.Option(None, "--class", help="Only this error class."),
    reason: str | None = typer.Option(None, "--reason", help="Only reasons containing this text."),
    since: str | None = typer.Option(None, "--since", help="Only dead letters from this time on."),
    until: str | None = typer.Option(None, "--until", help="Only dead letters before this time."),
    into: Into = DlqIntoOption,
    run_id: str | None = typer.Option(None, "--run-id", help="Run id (default: time-based)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be re-run and exit."),
    bootstrap_servers: str | None = bootstrap_servers_option(),
    registry_url: str | None = registry_url_option(),
    config_file: Path | None = ConfigFile,
    startup_timeout: float = StartupTimeout,
) -> None:
    """Re-run selected dead letters' original bytes through the current pipeline."""
    settings = connected(config_file, bootstrap_servers, registry_url, startup_timeout)
    selection = _selection(stage, error_class, reason, since, until)
    try:
        config = load_pipeline(pipeline)
        run = check_run_id(run_id or new_run_id())
        consumer = clients.consumer(settings.kafka, "headwater-dlq-planner")
        try:
            plan = plan_whole(consumer, config.dlq_topic)
        finally:
            consumer.close()
    except (PlanError, PipelineConfigError) as exc:
        fail(str(exc), 2)
    selected = sum(1 for _ in read(settings, config.dlq_topic, selection))
    if dry_run or selected == 0:
        console.print(f"{selected:,} of {plan.total:,} dead letters in {config.dlq_topic} selected"
                      + ("" if selected else "; nothing to replay"), highlight=False)
        return
    output, dead_letters = side_topics(config, run) if into == "side" else (config.output.topic, config.dlq_topic)
    state = ReplayState(
        run_id=run, pipeline_file=str(pipeline.resolve()), pipeline=config.label, kind="dlq", into=into,
        output_topic=output, dead_letter_topic=dead_letters, source_topic=plan.topic, live_topic=config.output.topic,
        plan=plan.as_json(),
        selection={"stage": stage, "class": error_class, "reason": reason, "since": since, "until": until},
    )
    run_with_progress(config, settings, plan, state, admit_selected(selection))

