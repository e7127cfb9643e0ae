"""`headwater enrich list`: every enrichment provider with the fields of its config."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from headwater.model_docs import model_fields
from streams.enrich import provider_index

app = typer.Typer(help="Enrichment providers.", no_args_is_help=True)
console = Console(width=160)


@app.command("list")
def list_providers() -> None:
    """Show every enrichment provider and the fields of its config (common limits first, then its own)."""
    for name in provider_index.names():
        config_model, provider = provider_index.entry(name)
        summary = (provider.__doc__ or sys.modules[provider.__module__].__doc__ or "").strip().splitlines()
        remote = "third-party service" if provider.remote else "local"
        title = f"{name} ({remote})" + (f" — {summary[0]}" if summary else "")
        table = Table(title=title, title_justify="left")
        for column in ("field", "type", "default", "description"):
            table.add_column(column, overflow="fold")
        for field in model_fields(config_model):
            default = "required" if field.required else field.default
            table.add_row(*(escape(text) for text in (field.name, field.type, default, field.description)))
        console.print(table)
