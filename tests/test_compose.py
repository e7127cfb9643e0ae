"""docker-compose.yml covers the whole stack with health checks, and says only what the code does: every Headwater
service's command parses in the real CLI (the same Typer app), its config files validate, and every port it
publishes or probes and every path it probes is one that process serves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer.core
import typer.main
import yaml
from aiohttp import web

from connectors.runner import load_plan
from connectors.sources.webhook import WebhookSource
from headwater.status import StatusServer
from schemas.registry.routes import add_routes
from streams.cli import app

REPO = Path(__file__).parent.parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
HEADWATER = sorted(name for name, service in SERVICES.items() if service.get("build") == ".")
_PROBE = re.compile(r"http://localhost:(\d+)(/[a-z]+)")
_COMPOSE_DEFAULT = re.compile(r"\$\{([A-Z_]+):-([^}]*)\}")


def parsed(args: list[str]) -> tuple[str, dict[str, Any]]:
    """The command path and parameter values the CLI resolves `headwater ARGS` to (click parses and validates the
    arguments as a run would, without running the command)."""
    command: Any = typer.main.get_command(app)
    rest, path = list(args), []
    while isinstance(command, typer.core.TyperGroup):
        name, *rest = rest
        assert name in command.commands, f"headwater has no command {' '.join([*path, name])!r}"
        command = command.commands[name]
        path.append(name)
    context = command.make_context(" ".join(path), rest)
    return " ".join(path), context.params


def environment(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment as compose passes it (`${VAR:-default}` taken at its default)."""
    return {key: _COMPOSE_DEFAULT.sub(lambda match: match.group(2), str(value))
            for key, value in service.get("environment", {}).items()}


def listening_ports(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """The ports the service's process serves: its status or registry port, and a webhook source's port."""
    command, params = parsed(service["command"])
    if command == "registry serve":
        return {params["port"]}
    ports = {params["status_port"]}
    if command == "connect run":
        for key, value in environment(service).items():
            monkeypatch.setenv(key, value)
        for config in params["configs"]:
            plan = load_plan(REPO / config)
            ports |= {c.config.port for c in plan.connectors if isinstance(c, WebhookSource)}
    return ports


def test_the_stack_has_every_part_and_each_a_health_check() -> None:
    commands = {name: parsed(SERVICES[name]["command"])[0] for name in HEADWATER}
    assert {"kafka", "postgres"} <= set(SERVICES)
    assert sorted(commands.values()) == ["connect run", "registry serve", "run"]
    assert all("healthcheck" in service for service in SERVICES.values())
    for name, service in SERVICES.items():
        assert set(service.get("depends_on", {})) <= set(SERVICES) - {name}


@pytest.mark.parametrize("name", HEADWATER)
def test_the_command_parses_its_files_validate_and_it_reaches_the_others_where_they_listen(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)  # the image's WORKDIR holds the repository's files at the same relative paths
    service = SERVICES[name]
    command, params = parsed(service["command"])
    for path in params.get("pipelines") or params.get("configs") or []:
        assert (REPO / path).is_file(), path
    if command != "registry serve":
        assert params["status_host"] == "0.0.0.0"  # reachable from the host and the health check alike
    env = environment(service)
    kafka_port = int(re.search(r"PLAINTEXT://:(\d+)", SERVICES["kafka"]["environment"]["KAFKA_LISTENERS"])[1])
    assert env["HEADWATER_KAFKA__BOOTSTRAP_SERVERS"] == f"kafka:{kafka_port}"
    assert env["HEADWATER_REGISTRY__URL"] == f"http://registry:{parsed(SERVICES['registry']['command'])[1]['port']}"
    ports = listening_ports(service, monkeypatch)
    published = {int(str(mapping).split(":")[-1]) for mapping in service.get("ports", [])}
    assert published and published <= ports, (published, ports)
    probes = _PROBE.findall(" ".join(service["healthcheck"]["test"]))
    assert probes and all(int(port) in ports for port, _ in probes), probes


async def test_every_probed_path_is_served() -> None:
    probed = {name: {path for _, path in _PROBE.findall(" ".join(SERVICES[name]["healthcheck"]["test"]))}
              for name in HEADWATER}
    registry_app = web.Application()
    add_routes(registry_app)
    registry_paths = {resource.canonical for resource in registry_app.router.resources()}
    assert probed["registry"] <= registry_paths
    server = StatusServer(lambda: True)
    port = await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for name in set(HEADWATER) - {"registry"}:
                for path in probed[name]:
                    assert (await http.get(path)).status_code == 200, (name, path)
    finally:
        await server.stop()
