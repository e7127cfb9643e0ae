"""`headwater broker ...`: install, start, stop and inspect the embedded Kafka broker."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from streams.broker import KAFKA_VERSION, BrokerError, EmbeddedBroker, ensure_jars
from streams.broker.security import SaslSsl, load_scram_users

app = typer.Typer(help=f"The embedded Apache Kafka {KAFKA_VERSION} broker (KRaft, one node).", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

DEFAULT_DATA_DIR = Path(".headwater/broker")
DataDir = typer.Option(DEFAULT_DATA_DIR, "--data-dir", "-d", help="Folder holding the broker's data and logs.")
CertificateChain = typer.Option(
    None, "--ssl-certificate-chain", help="SASL_SSL: the broker's PEM certificate (then intermediates)."
)
PrivateKey = typer.Option(None, "--ssl-key", help="SASL_SSL: the broker's unencrypted PKCS#8 PEM key.")
CertificateAuthority = typer.Option(None, "--ssl-ca", help="SASL_SSL: PEM of the CA that signed the certificate.")
ScramUsersFile = typer.Option(
    None, "--scram-users-file",
    help="SASL_SSL: `user:password` lines, created as SCRAM-SHA-512 users when the data dir is formatted.",
)


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


def _sasl_ssl(
    certificate_chain: Path | None, private_key: Path | None, ca: Path | None, users_file: Path | None
) -> SaslSsl | None:
    given = {"--ssl-certificate-chain": certificate_chain, "--ssl-key": private_key, "--ssl-ca": ca,
             "--scram-users-file": users_file}
    if all(value is None for value in given.values()):
        return None
    if certificate_chain is None or private_key is None or ca is None or users_file is None:
        missing = [flag for flag, value in given.items() if value is None]
        raise BrokerError(f"a SASL_SSL listener also needs {', '.join(missing)}")
    return SaslSsl(certificate_chain, private_key, ca, load_scram_users(users_file))


@app.command()
def start(
    port: int = typer.Option(None, "--port", "-p", help="Client port (default 9092, or the last one used)."),
    data_dir: Path = DataDir,
    certificate_chain: Path | None = CertificateChain,
    private_key: Path | None = PrivateKey,
    ca: Path | None = CertificateAuthority,
    users_file: Path | None = ScramUsersFile,
) -> None:
    """Format storage on first use, start the broker in the background, wait until it answers.

    With the four SASL_SSL options the client listener is SASL_SSL with SCRAM-SHA-512 instead of PLAINTEXT."""
    try:
        broker = EmbeddedBroker(data_dir, port=port, sasl_ssl=_sasl_ssl(certificate_chain, private_key, ca, users_file))
    except BrokerError as exc:
        _fail(exc)
    try:
        status = broker.start()
    except BrokerError as exc:
        _fail(exc, broker.log_file)
    console.print(
        f"broker running (pid {status.pid}); bootstrap servers: {status.bootstrap} ({status.protocol})",
        highlight=False, soft_wrap=True,
    )
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
        console.print(
            f"running (pid {current.pid}) on {current.bootstrap} ({current.protocol}); log: {current.log_file}",
            highlight=False, soft_wrap=True,
        )
    else:
        console.print(f"not running (data dir {current.data_dir})")
