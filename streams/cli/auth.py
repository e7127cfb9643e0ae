"""`headwater auth hash-key`: the stored form of an API key, for the `auth.api_keys[].hash` of a server's config."""

from __future__ import annotations

import sys

import typer

from headwater.auth.api_keys import hash_key, new_key
from streams.cli.options import fail

app = typer.Typer(help="Credentials for ingest and the registry.", no_args_is_help=True)


@app.command("hash-key")
def hash_key_command(
    generate: bool = typer.Option(
        False, "--generate", help="Make a new random key; it is printed once, on stderr, before its hash."
    ),
) -> None:
    """Print the stored form (salted scrypt) of the API key read from stdin, or of a new key with --generate.

    The key is read from stdin, never taken as an argument, so it stays out of shell history and process lists.
    """
    if generate:
        key = new_key()
        typer.echo(f"key (give it to the client, it is not kept): {key}", err=True)
    else:
        key = sys.stdin.readline().strip()
        if not key:
            fail("no key on stdin (or pass --generate)", 2)
    typer.echo(hash_key(key))
