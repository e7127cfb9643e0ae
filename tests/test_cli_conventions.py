"""One CLI convention: the same connection flags on every command, `--startup-timeout` that ends an unreachable
broker or registry in one line, `--status-host`/`--status-port` where a busy port is an error, settings refused
before anything starts, and configs holding any librdkafka property run on both runtimes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer.core
import typer.main
import yaml

from headwater.ports import free_port
from headwater.settings import load_settings
from streams.cli import app
from tests.cli import headwater
from tests.connect_support import wait_for
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService
from tests.pipeline_support import pipeline_file

CONNECTION = {"--bootstrap-servers", "--registry-url", "--config"}
# What each command talks to decides its options; a command added without a line here fails the walk below.
CONNECTED = {"run", "tail", "connect run", "registry serve", "schemas register", "schemas check", "produce", "consume",
             "replay start", "replay diff", "replay promote", "dlq summary", "dlq show", "dlq replay",
             "quality report", "quality resume", "lineage", "catalog", "ui"}
LOCAL_ONLY = {"up", "broker install", "broker start", "broker stop", "broker status", "connect list", "enrich list",
              "auth hash-key", "quality check"}
LONG_RUNNING = {"run", "connect run", "registry serve", "up"}
WITH_STATUS_ENDPOINTS = {"run", "connect run", "ui", "up"}
RUNTIMES = ("faust", "direct")


def commands(group: typer.core.TyperGroup, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, command in group.commands.items():
        path = f"{prefix} {name}".strip()
        if isinstance(command, typer.core.TyperGroup):
            yield from commands(command, path)
        else:
            yield path, command


def options(command: Any) -> list[typer.core.TyperOption]:
    return [param for param in command.params if isinstance(param, typer.core.TyperOption)]


def test_every_command_takes_the_same_flags() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    found = dict(commands(root))
    assert set(found) == CONNECTED | LOCAL_ONLY, "classify the new command in this test"
    spellings: dict[str, set[tuple[str, ...]]] = {}
    for path, command in found.items():
        names = {name for option in options(command) for name in option.opts}
        assert not names & {"--bootstrap", "--registry", "-b", "-r"}, f"{path} keeps an old spelling"
        if path in CONNECTED:
            assert names >= CONNECTION, f"{path} lacks {CONNECTION - names}"
        if path in LONG_RUNNING:
            assert {"--startup-timeout", "--log-format"} <= names, path
        if path in WITH_STATUS_ENDPOINTS:
            assert {"--status-host", "--status-port"} <= names, path
        for option in options(command):
            if set(option.opts) & {*CONNECTION, "--startup-timeout"}:
                spellings.setdefault(option.opts[0], set()).add(tuple(option.opts + option.secondary_opts))
    # Defined once: each shared option has one spelling (and the same short alias) on every command.
    assert {name: len(forms) for name, forms in spellings.items()} == {
        "--bootstrap-servers": 1, "--registry-url": 1, "--config": 1, "--startup-timeout": 1
    }


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def assert_one_line_failure(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    # librdkafka prints its own lines (`%3|...`) from its threads, whenever they run; the command's own last word
    # is the error.
    ours = [line for line in result.stderr.strip().splitlines() if not line.startswith("%")]
    assert ours[-1] == errors[0], result.stderr
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def settings_file(path: Path, kafka: dict[str, Any], registry_url: str | None = None) -> Path:
    data: dict[str, Any] = {"kafka": kafka}
    if registry_url is not None:
        data["registry"] = {"url": registry_url}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def simple_pipeline(tmp_path: Path, raw_topic: str = "crm.contacts.raw") -> Path:
    return pipeline_file(tmp_path, raw_topic, transform=[], enrich=[], quality=None)


def connect_file(tmp_path: Path, with_kafka: str | None = None) -> Path:
    data: dict[str, Any] = {
        "connectors": [{"name": "wh", "connector": "duckdb",
                        "config": {"database": str(tmp_path / "w.duckdb"), "topics": ["t.u.enriched"]}}]
    }
    if with_kafka is not None:
        data["kafka"] = {"bootstrap.servers": with_kafka}
    path = tmp_path / "connect.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("command", ["run faust", "run direct", "connect run", "registry serve"])
def test_startup_timeout_ends_an_unreachable_broker_in_one_line(tmp_path: Path, command: str) -> None:
    closed = f"127.0.0.1:{free_port()}"
    args: list[str]
    if command.startswith("run"):
        args = ["run", str(simple_pipeline(tmp_path)), "--runtime", command.split()[1], "--status-port", "0"]
    elif command == "connect run":
        args = ["connect", "run", str(connect_file(tmp_path)), "--status-port", "0"]
    else:
        args = ["registry", "serve", "--port", str(free_port())]
    started = time.monotonic()
    result = headwater(*args, "--bootstrap-servers", closed, "--startup-timeout", "3", timeout=60)
    elapsed = time.monotonic() - started
    assert_one_line_failure(result, closed, "--startup-timeout")
    assert result.returncode == 1
    # Without the flag this waits 300 s; the rest of the budget is interpreter and import start-up.
    assert elapsed < 25, elapsed


def test_startup_timeout_ends_an_unreachable_registry_in_one_line(tmp_path: Path, kafka: KafkaService) -> None:
    topic = kafka.create_topic()
    down = f"http://127.0.0.1:{free_port()}"
    result = headwater(
        "run", str(simple_pipeline(tmp_path, topic)), "--runtime", "direct", "--status-port", "0",
        "--bootstrap-servers", kafka.bootstrap, "--registry-url", down, "--startup-timeout", "3", timeout=60,
    )
    assert_one_line_failure(result, f"registry {down} unreachable", "--startup-timeout")


@contextmanager
def listening(host: str = "127.0.0.1") -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((host, 0))
        taken.listen()
        yield int(taken.getsockname()[1])


@pytest.mark.parametrize("command", ["run faust", "run direct", "connect run", "registry serve"])
def test_a_busy_status_port_is_an_error_naming_it(tmp_path: Path, command: str) -> None:
    with listening() as busy:
        if command.startswith("run"):
            args = ["run", str(simple_pipeline(tmp_path)), "--runtime", command.split()[1], "--status-port", str(busy)]
        elif command == "connect run":
            args = ["connect", "run", str(connect_file(tmp_path)), "--status-port", str(busy)]
        else:  # the registry's own port serves its /readyz
            args = ["registry", "serve", "--port", str(busy)]
        result = headwater(*args, "--bootstrap-servers", f"127.0.0.1:{free_port()}", "--startup-timeout", "30",
                           timeout=60)
    named = f"registry port {busy} on 127.0.0.1" if command == "registry serve" else f"status port {busy} on 127.0.0.1"
    assert_one_line_failure(result, named, "not available (address already in use)")
    assert result.returncode == 1


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a socket listening on `port`, from the kernel's table (/proc/net/tcp)."""
    found: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


@contextmanager
def started(*args: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`headwater ARGS` in the background, its output in `log`; stopped with SIGTERM (SIGKILL if it hangs)."""
    with log.open("ab") as output:
        process = subprocess.Popen([sys.executable, "-m", "streams.cli", *args], stdout=output,
                                   stderr=subprocess.STDOUT, env={**os.environ})
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def ready(process: subprocess.Popen[bytes], port: int, log: Path) -> bool:
    assert process.poll() is None, log.read_text(errors="replace")[-3000:]
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_status_host_binds_every_interface_for_connect_run(tmp_path: Path, kafka: KafkaService,
                                                           registry: RegistryService) -> None:
    port = free_port("0.0.0.0")
    config = connect_file(tmp_path, with_kafka=kafka.bootstrap)
    log = tmp_path / "connect.log"
    with started("connect", "run", str(config), "--registry-url", registry.url, "--status-host", "0.0.0.0",
                 "--status-port", str(port), log=log) as process:
        wait_for(lambda: ready(process, port, log), 60, "connect run /readyz on 127.0.0.1")
        assert listening_addresses(port) == {"0.0.0.0"}


LIBRDKAFKA_EXTRAS = {"ssl.endpoint.identification.algorithm": "none", "socket.keepalive.enable": True,
                     "client.id": "x"}


@pytest.mark.parametrize(("runtime", "extra"), [
    ("faust", LIBRDKAFKA_EXTRAS),
    ("direct", LIBRDKAFKA_EXTRAS),
    ("direct", {"sasl.kerberos.service.name": "kafka"}),
])
def test_a_config_with_librdkafka_properties_starts(
    tmp_path: Path, kafka: KafkaService, registry: RegistryService, runtime: str, extra: dict[str, Any]
) -> None:
    topic = kafka.create_topic()
    config = settings_file(tmp_path / "settings.yaml", {"bootstrap.servers": kafka.bootstrap, **extra}, registry.url)
    port = free_port("0.0.0.0")
    log = tmp_path / "run.log"
    with started("run", str(simple_pipeline(tmp_path, topic)), "--config", str(config), "--runtime", runtime,
                 "--status-host", "0.0.0.0", "--status-port", str(port), "--session-timeout-ms", "6000",
                 log=log) as process:
        wait_for(lambda: ready(process, port, log), 120, f"/readyz of the {runtime} runtime")
        # Both runtimes' status servers (Faust's own web server on faust) listen on every interface.
        assert listening_addresses(port) == {"0.0.0.0"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log.read_text(errors="replace")[-3000:]


@pytest.mark.parametrize(("runtime", "extra", "named"), [
    ("faust", {"sasl.kerberos.service.name": "kafka"}, "'sasl.kerberos.service.name'"),
    ("faust", {"no.such.property": 1}, '"no.such.property"'),
    ("direct", {"no.such.property": 1}, '"no.such.property"'),
    ("direct", {"socket.timeout.ms": "soon"}, '"socket.timeout.ms"'),
])
def test_a_property_the_runtime_cannot_use_fails_in_one_line_naming_it(
    tmp_path: Path, runtime: str, extra: dict[str, Any], named: str
) -> None:
    config = settings_file(tmp_path / "settings.yaml", {"bootstrap.servers": f"127.0.0.1:{free_port()}", **extra})
    status_port = free_port()
    result = headwater("run", str(simple_pipeline(tmp_path)), "--config", str(config), "--runtime", runtime,
                       "--status-port", str(status_port), timeout=60)
    assert_one_line_failure(result, named)
    assert result.returncode == 2
    assert "event=status_server_started" not in result.stderr  # refused before anything started


@pytest.mark.parametrize("command", ["run", "tail", "connect run", "registry serve", "schemas check"])
def test_a_bad_settings_file_is_refused_naming_file_and_field(tmp_path: Path, command: str) -> None:
    config = settings_file(tmp_path / "settings.yaml", {"security.protocol": "PLAINTEXTX"})
    args = {
        "run": ["run", str(simple_pipeline(tmp_path))],
        "tail": ["tail", "t.u.raw"],
        "connect run": ["connect", "run", str(connect_file(tmp_path))],
        "registry serve": ["registry", "serve"],
        "schemas check": ["schemas", "check"],
    }[command]
    result = headwater(*args, "--config", str(config), timeout=60)
    line = assert_one_line_failure(result, str(config), "kafka.security.protocol", "PLAINTEXT")
    assert result.returncode == 2
    assert "validation error" not in result.stderr and "FromData" not in result.stderr
    assert "errors.pydantic.dev" not in line


def test_an_environment_variable_with_a_bad_value_is_named(tmp_path: Path) -> None:
    config = settings_file(tmp_path / "settings.yaml", {"bootstrap.servers": "127.0.0.1:1"})
    result = headwater("run", str(simple_pipeline(tmp_path)), "--config", str(config),
                       env={"HEADWATER_KAFKA__SECURITY_PROTOCOL": "SASL_SOMETHING"}, timeout=60)
    assert_one_line_failure(result, "environment HEADWATER_KAFKA__SECURITY_PROTOCOL", "kafka.security.protocol")


def test_precedence_flag_over_environment_over_file_for_an_extra_property(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = settings_file(tmp_path / "settings.yaml", {"socket.timeout.ms": 1000, "reconnect.backoff.ms": 7})
    assert load_settings(config).kafka.properties()["socket.timeout.ms"] == "1000"
    monkeypatch.setenv("HEADWATER_KAFKA__SOCKET_TIMEOUT_MS", "2000")
    from_env = load_settings(config).kafka.properties()
    assert (from_env["socket.timeout.ms"], from_env["reconnect.backoff.ms"]) == ("2000", "7")
    from_flag = load_settings(config, kafka={"socket.timeout.ms": "3000"}).kafka.properties()
    assert (from_flag["socket.timeout.ms"], from_flag["reconnect.backoff.ms"]) == ("3000", "7")


@pytest.mark.parametrize("command", ["run", "connect run"])
def test_precedence_of_the_connection_flags(tmp_path: Path, command: str) -> None:
    """The broker a command gives up on shows which source won: flag > environment > --config file."""
    in_file, in_env, in_flag = (f"127.0.0.1:{free_port()}" for _ in range(3))
    config = settings_file(tmp_path / "settings.yaml", {"bootstrap.servers": in_file})
    base = (["run", str(simple_pipeline(tmp_path)), "--runtime", "direct"] if command == "run"
            else ["connect", "run", str(connect_file(tmp_path))])
    args = [*base, "--config", str(config), "--status-port", "0", "--startup-timeout", "1"]
    assert_one_line_failure(headwater(*args, timeout=60), in_file)
    env = {"HEADWATER_KAFKA__BOOTSTRAP_SERVERS": in_env}
    assert_one_line_failure(headwater(*args, env=env, timeout=60), in_env)
    assert_one_line_failure(headwater(*args, "--bootstrap-servers", in_flag, env=env, timeout=60), in_flag)
