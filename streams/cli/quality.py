"""`headwater quality check|report|resume`: a suite tried on samples, window reports, a paused pipeline resumed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from headwater.api.positions import PositionError, parse_time
from quality.suite import SuiteError
from quality.validator import QualityValidator
from streams.cli.options import ConfigFile, StartupTimeout, bootstrap_servers_option, fail, registry_url_option
from streams.cli.replay import connected
from streams.runtime.config import SUITES_DIR
from streams.runtime.quality_pause import resume
from streams.runtime.quality_view import TopicMissing, check_sample, read_reports, render_html

app = typer.Typer(no_args_is_help=True, help="Quality: try a suite on samples, read window reports, resume a pause.")
console = Console()
_SHOWN_LINES = 10
SampleOption: Any = typer.Option(..., "--input", "-i", help="Sample records, JSON Lines, shaped as the pipeline's "
                                                            "output records.")
HtmlOption: Any = typer.Option(None, "--html", help="Also render each window with GX Data Docs into this directory.")


def _suite_path(suite: str) -> Path:
    path = Path(suite)
    return path if path.exists() or "/" in suite or suite.endswith(".json") else SUITES_DIR / f"{suite}.json"


def _samples(path: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        fail(f"cannot read {path}: {exc}", 2)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            fail(f"{path} line {number}: not JSON: {exc}", 2)
        if not isinstance(record, dict):
            fail(f"{path} line {number}: a record is a JSON object", 2)
        records.append(record)
    return records


@app.command("check")
def check_command(
    suite: str = typer.Argument(..., help="A shipped suite by name or a GX suite JSON file."),
    input_file: Path = SampleOption,
) -> None:
    """Which expectations the sample fails, on which lines; exits 1 if an error-severity one fails."""
    try:
        validator = QualityValidator(_suite_path(suite))
    except SuiteError as exc:
        fail(str(exc), 2)
    records = _samples(input_file)
    table = Table("expectation", "kind", "severity", "result", "lines failing / observed")
    blocking = False
    for line in check_sample(validator, records):
        if line.kind == "aggregate":
            detail = json.dumps(line.observed, default=str)
        else:
            shown = ", ".join(str(number) for number in line.lines[:_SHOWN_LINES])
            detail = shown + (f" (+{len(line.lines) - _SHOWN_LINES} more)" if len(line.lines) > _SHOWN_LINES else "")
        table.add_row(line.name, line.kind, line.severity, "pass" if line.success else "FAIL", escape(detail))
        blocking = blocking or (not line.success and line.severity == "error")
    console.print(f"{validator.path}: {len(records)} records from {input_file}", highlight=False)
    console.print(table)
    if blocking:
        raise typer.Exit(1)


@app.command("report")
def report_command(
    topic: str = typer.Argument(..., help="Quality topic, e.g. crm.contacts.quality."),
    since: str | None = typer.Option(None, "--since", help="Only windows reported from this time on (ISO-8601, "
                                                           "or 15m/2h/7d ago)."),
    html: Path | None = HtmlOption,
    last: int = typer.Option(20, "--last", "-n", help="Show the latest N windows."),
    bootstrap_servers: str | None = bootstrap_servers_option(),
    registry_url: str | None = registry_url_option(used=False),
    config_file: Path | None = ConfigFile,
    startup_timeout: float = StartupTimeout,
) -> None:
    """The latest windows' reports as a table: bounds, offsets covered, each expectation's verdict."""
    settings = connected(config_file, bootstrap_servers, registry_url, startup_timeout)
    try:
        reports = read_reports(settings.kafka, topic, parse_time(since) if since else None)[-last:]
    except (TopicMissing, PositionError) as exc:
        fail(str(exc), 2)
    if not reports:
        console.print(f"no quality reports in {topic}", highlight=False)
        return
    table = Table("closed (UTC)", "pipeline", "records", "window", "offsets", "result", "expectations")
    for body in reports:
        window = body["window"]
        offsets = " ".join(f"{source}:{span['first']}-{span['last']}" for source, span in body["offsets"].items())
        verdicts = " ".join(
            f"{item['name']}={'ok' if item['success'] else 'FAIL'}({json.dumps(item['observed_value'], default=str)})"
            for item in body["expectations"]
        )
        table.add_row(window["closed_at"][:19], body["pipeline"], str(window["records"]),
                      f"{window['start']} .. {window['end']}", escape(offsets),
                      "pass" if body["success"] else "FAIL", escape(verdicts))
    console.print(table)
    if html is not None:
        pages = render_html(reports, html)
        console.print(f"Data Docs: {pages[0]} ({len(pages) - 1} windows)", highlight=False)


@app.command("resume")
def resume_command(
    pipeline: str = typer.Argument(..., help="Pipeline name (the `name:` of its YAML file)."),
    bootstrap_servers: str | None = bootstrap_servers_option(),
    registry_url: str | None = registry_url_option(used=False),
    config_file: Path | None = ConfigFile,
    startup_timeout: float = StartupTimeout,
) -> None:
    """Let a pipeline paused by a failed window (`on_fail: pause`) consume again, on every worker."""
    settings = connected(config_file, bootstrap_servers, registry_url, startup_timeout)
    resume(settings.kafka, pipeline)
    console.print(f"{pipeline}: resumed; its workers consume again", highlight=False)
