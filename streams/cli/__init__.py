"""The `headwater` command line: one Typer sub-app per area, each in its own module."""

from __future__ import annotations

import typer

from headwater.logs import configure_logging
from streams.cli import auth, broker, connect, enrich
from streams.cli import pipeline as pipeline_cli
from streams.cli import quality as quality_cli
from streams.cli import registry as registry_cli
from streams.cli import schemas as schemas_cli
from streams.cli.catalog import catalog_command
from streams.cli.consume import consume_command
from streams.cli.dlq import app as dlq_app
from streams.cli.lineage import lineage_command
from streams.cli.produce import produce
from streams.cli.replay import app as replay_app
from streams.cli.ui import ui

app = typer.Typer(
    name="headwater",
    help="Streaming data pipelines on Kafka: validate, transform, enrich and quality-check records.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(auth.app, name="auth")
app.add_typer(broker.app, name="broker")
app.add_typer(connect.app, name="connect")
app.add_typer(enrich.app, name="enrich")
app.add_typer(registry_cli.app, name="registry")
app.add_typer(schemas_cli.app, name="schemas")
app.add_typer(replay_app, name="replay")
app.add_typer(dlq_app, name="dlq")
app.add_typer(quality_cli.app, name="quality")
pipeline_cli.register(app)
app.command("produce")(produce)
app.command("consume")(consume_command)
app.command("lineage")(lineage_command)
app.command("catalog")(catalog_command)
app.command("ui")(ui)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at debug level.")) -> None:
    configure_logging(verbose)


def main() -> None:
    app()
