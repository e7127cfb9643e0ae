"""`headwater replay`: backfills through today's pipeline over an exact range, then `diff` and `promote`.

    headwater replay PIPELINE.yaml --from TIME --to TIME | --offsets P:START-END,... [--into side|live] [--dry-run]
    headwater replay --resume RUN
    headwater replay diff RUN
    headwater replay promote RUN
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, Literal

import typer
from confluent_kafka import TopicPartition
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from typer.core import TyperGroup

from headwater.api.positions import PositionError
from headwater.dependencies import DependencyDown
from headwater.kafka import clients, cluster
from headwater.kafka.clients import KafkaConfigError
from headwater.settings import HeadwaterSettings
from schemas.client import registry_client
from streams.cli.options import (
    ConfigFile,
    StartupTimeout,
    bootstrap_servers_option,
    connection_settings,
    err,
    fail,
    registry_url_option,
)
from streams.replay import state as replay_state
from streams.replay.compare import compare
from streams.replay.plan import PlanError, ReplayPlan, check_run_id, new_run_id, plan_by_offsets, plan_by_time
from streams.replay.promote import PromoteFailed, promote
from streams.replay.run import Admit, ReplayFailed, in_message, run_replay, side_topics
from streams.replay.state import ReplayState
from streams.runtime.config import PipelineConfig, PipelineConfigError, load_pipeline
from streams.runtime.engine import PipelineEngine
from streams.runtime.records import InMessage

console = Console()
Into = Literal["side", "live"]


class _StartByDefault(TyperGroup):
    """`headwater replay PIPELINE.yaml ...` and `headwater replay --resume RUN` run `start`; `diff` and `promote`
    are subcommands."""

    def parse_args(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_StartByDefault, no_args_is_help=True, help=(
    "Replay a range of a pipeline's input through its current version: `headwater replay PIPELINE.yaml --from TIME "
    "--to TIME | --offsets P:START-END,... [--into side|live] [--run-id ID] [--dry-run]`, `headwater replay --resume "
    "RUN`; then `diff RUN` and `promote RUN`."
))
PipelineArgument = typer.Argument(None, help="Pipeline YAML file (its current version is replayed).")
IntoOption = typer.Option("side", "--into", help="side (default): <domain>.<entity>.backfill.<run>; "
                                                 "live: the pipeline's enriched topic.")


def connected(config_file: Path | None, bootstrap_servers: str | None, registry_url: str | None,
              startup_timeout: float) -> HeadwaterSettings:
    """Settings once the broker answers (bounded backoff), or one line and exit 1."""
    settings = connection_settings(config_file, bootstrap_servers, registry_url)
    try:
        cluster.wait_for_broker(settings.kafka, startup_timeout)
    except DependencyDown as exc:
        fail(f"{exc} (gave up after --startup-timeout {startup_timeout:g}s)", 1)
    except KafkaConfigError as exc:
        fail(str(exc), 1)
    return settings


def _load_state(settings: HeadwaterSettings, run_id: str) -> ReplayState:
    found = replay_state.load(settings.kafka, run_id)
    if found is None:
        fail(f"no replay run {run_id} in {replay_state.REPLAYS_TOPIC}", 2)
    return found


def _plan(settings: HeadwaterSettings, topic: str, start: str | None, end: str | None,
          offsets: str | None) -> ReplayPlan:
    consumer = clients.consumer(settings.kafka, "headwater-replay-planner")
    try:
        if offsets is not None:
            return plan_by_offsets(consumer, topic, offsets)
        if start is None or end is None:
            raise PlanError("give --from TIME and --to TIME, or --offsets P:START-END,...")
        return plan_by_time(consumer, topic, start, end)
    finally:
        consumer.close()


def _estimate(config: PipelineConfig, settings: HeadwaterSettings, plan: ReplayPlan) -> tuple[float, float]:
    """Records/s and USD per record, measured by running the stages (without producing) over the plan's first
    micro-batch."""
    consumer = clients.consumer(settings.kafka, "headwater-replay-estimate")
    engine = PipelineEngine(config, registry_client(settings.registry))
    try:
        first = next(item for item in plan.ranges if item.count)
        consumer.assign([TopicPartition(plan.topic, first.partition, first.start)])
        messages = [m for m in consumer.consume(min(first.count, config.batch.size), 10.0) if m.error() is None]
        if not messages:
            return 0.0, 0.0
        began = time.perf_counter()
        asyncio.run(_process_once(engine, [in_message(message) for message in messages]))
        elapsed = time.perf_counter() - began
        cost = sum(engine.enrich.cost_usd.values())
        return len(messages) / elapsed, cost / len(messages)
    finally:
        consumer.close()
        engine.close()


async def _process_once(engine: PipelineEngine, batch: list[InMessage]) -> None:
    try:
        await engine.process(batch)
    finally:
        await engine.stop()


def _print_plan(run_id: str, config: PipelineConfig, plan: ReplayPlan, target: str, rate: float,
                usd_per_record: float) -> None:
    title = f"replay {run_id}: {config.label} {plan.topic} → {target}"
    table = Table("partition", "start", "end", "records", title=title)
    for item in plan.ranges:
        table.add_row(str(item.partition), str(item.start), str(item.end), f"{item.count:,}")
    console.print(table)
    seconds = plan.total / rate if rate else 0.0
    console.print(f"{plan.total:,} records; estimated {seconds:,.0f} s at {rate:,.0f} records/s (measured on the first "
                  f"batch, stages only); estimated AI cost ${usd_per_record * plan.total:,.4f}", highlight=False)


def run_with_progress(config: PipelineConfig, settings: HeadwaterSettings, plan: ReplayPlan, state: ReplayState,
                      admit: Admit | None = None) -> None:
    """Run a replay with a progress bar (records, rate, ETA), then print its summary."""
    stop = threading.Event()
    progress = Progress(TextColumn(f"[bold]replay {state.run_id}[/bold]"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]:,.0f} records/s"), TimeRemainingColumn(), console=err)
    already = state.records_in
    first: list[tuple[float, int]] = []
    with progress:
        task = progress.add_task("replay", total=plan.total, completed=already, rate=0.0)

        def advanced(current: ReplayState) -> None:
            """The rate counts from the first batch on, so the pipeline's start-up does not dilute it."""
            if not first:
                first.append((time.monotonic(), current.records_in))
            began, at_first = first[0]
            elapsed = time.monotonic() - began
            rate = (current.records_in - at_first) / elapsed if elapsed > 0 else 0.0
            progress.update(task, completed=current.records_in, rate=rate)

        try:
            finished = run_replay(config, settings, plan, state, stop, advanced, admit)
        except KeyboardInterrupt:
            stop.set()
            fail(f"interrupted; continue with: headwater replay --resume {state.run_id}", 130)
        except ReplayFailed as exc:
            fail(f"{exc}; continue with: headwater replay --resume {state.run_id}", 1)
    console.print(
        f"replay {finished.run_id}: in {finished.records_in:,}, out {finished.records_out:,}, dead-lettered "
        f"{finished.dead_lettered:,} → {finished.output_topic} (dead letters → {finished.dead_letter_topic})",
        highlight=False,
    )


@app.command("start", hidden=True)
def start_command(
    pipeline: Path | None = PipelineArgument,
    start: str | None = typer.Option(None, "--from", help="Start time (ISO-8601, or 15m/2h/7d ago)."),
    end: str | None = typer.Option(None, "--to", help="End time, exclusive."),
    offsets: str | None = typer.Option(None, "--offsets", help="P:START-END,... per partition (END exclusive)."),
    into: Into = IntoOption,
    run_id: str | None = typer.Option(None, "--run-id", help="Run id (default: time-based); the same id again "
                                                             "continues that run and writes nothing twice."),
    resume: str | None = typer.Option(None, "--resume", help="Continue the run with this id where it stopped."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan with estimates and exit."),
    bootstrap_servers: str | None = bootstrap_servers_option(),
    registry_url: str | None = registry_url_option(),
    config_file: Path | None = ConfigFile,
    startup_timeout: float = StartupTimeout,
) -> None:
    """Replay a range of a pipeline's input through its current version."""
    settings = connected(config_file, bootstrap_servers, registry_url, startup_timeout)
    try:
        existing = _load_state(settings, resume) if resume else None
        if existing is None and pipeline is None:
            fail("give a pipeline file, or --resume RUN", 2)
        pipeline_file = Path(existing.pipeline_file) if existing else pipeline
        assert pipeline_file is not None
        config = load_pipeline(pipeline_file)
        run = check_run_id(resume or run_id or new_run_id())
        if existing is None:
            existing = replay_state.load(settings.kafka, run)
        if existing is not None:
            plan = ReplayPlan.from_json(existing.source_topic, existing.plan)
            state = existing
            err.print(f"continuing replay {run} ({state.records_in:,} of {plan.total:,} records done)",
                      highlight=False)
        else:
            plan = _plan(settings, config.input.topics[0], start, end, offsets)
            output, dead_letters = side_topics(config, run) if into == "side" else (
                config.output.topic, config.dlq_topic)
            state = ReplayState(
                run_id=run, pipeline_file=str((pipeline or Path()).resolve()), pipeline=config.label, kind="range",
                into=into, output_topic=output, dead_letter_topic=dead_letters, source_topic=plan.topic,
                live_topic=config.output.topic, plan=plan.as_json(),
            )
    except (PlanError, PositionError, PipelineConfigError) as exc:
        fail(str(exc), 2)
    if plan.total == 0:
        console.print(f"nothing to replay: no records in {plan.topic} in that range", highlight=False)
        return
    if dry_run:
        rate, usd = _estimate(config, settings, plan)
        _print_plan(run, config, plan, state.output_topic, rate, usd)
        return
    run_with_progress(config, settings, plan, state)


@app.command("diff")
def diff_command(
    run_id: str = typer.Argument(..., help="Replay run id."),
    bootstrap_servers: str | None = bootstrap_servers_option(),
    registry_url: str | None = registry_url_option(),
    config_file: Path | None = ConfigFile,
    startup_timeout: float = StartupTimeout,
) -> None:
    """Compare a run's side topic with the live enriched topic for the same sources."""
    settings = connected(config_file, bootstrap_servers, registry_url, startup_timeout)
    state = _load_state(settings, run_id)
    if state.into == "live":
        fail(f"replay {run_id} wrote to the live topic {state.output_topic}: there is no side topic to compare", 2)
    found = compare(settings, state.output_topic, state.dead_letter_topic, state.live_topic)
    console.print(f"replay {run_id} ({state.output_topic}) against {state.live_topic}: identical {found.identical:,}, "
                  f"changed {found.changed:,}, new {found.new:,}, dead-lettered {found.dead_lettered:,}",
                  highlight=False)
    if found.fields:
        table = Table("field", "records changed", "example")
        for name, count in found.fields.most_common(10):
            table.add_row(name, f"{count:,}", escape(found.examples[name]))
        console.print(table)


@app.command("promote")
def promote_command(
    run_id: str = typer.Argument(..., help="Replay run id."),
    bootstrap_servers: str | None = bootstrap_servers_option(),
    registry_url: str | None = registry_url_option(),
    config_file: Path | None = ConfigFile,
    startup_timeout: float = StartupTimeout,
) -> None:
    """Copy a finished run's side topic into the live enriched topic (idempotent)."""
    settings = connected(config_file, bootstrap_servers, registry_url, startup_timeout)
    state = _load_state(settings, run_id)
    if state.into == "live":
        fail(f"replay {run_id} already wrote to the live topic {state.output_topic}", 2)
    if state.status != "done":
        fail(f"replay {run_id} is not finished; continue it first: headwater replay --resume {run_id}", 2)
    try:
        copied = promote(settings, run_id, state.output_topic, state.live_topic)
    except PromoteFailed as exc:
        fail(str(exc), 1)
    console.print(f"promoted {copied:,} records of {state.output_topic} into {state.live_topic}", highlight=False)

