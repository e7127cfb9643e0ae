"""Run one registry process: listen at once, connect to Kafka with backoff, load `_schemas`, join the election,
answer until SIGTERM/SIGINT, then leave the group and close cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from tenacity import AsyncRetrying, retry_if_not_exception_type, wait_exponential

from headwater.auth import auth_middleware
from headwater.dependencies import DependencyDown
from headwater.kafka.clients import KafkaConfigError
from headwater.status import StatusPortBusy, bind_failure
from schemas.registry.auth import OPEN_PATHS, basic_auth_middleware, load_users, registry_refusal, registry_scopes
from schemas.registry.config import RegistryServerConfig
from schemas.registry.election import PrimaryElection
from schemas.registry.routes import REGISTRY, Registry, add_routes, error_middleware, readiness_middleware
from schemas.registry.service import RegistryService
from schemas.registry.state import RegistryState
from schemas.registry.store import SchemaLog, TopicLayoutError

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024 * 1024
# Requests still running at SIGTERM get this long to finish; the rest are cancelled and their clients retry (a write
# cut short leaves an open transaction, which the next primary's take-over aborts).
DRAIN_SECONDS = 5.0


def build_app(config: RegistryServerConfig, registry: Registry) -> web.Application:
    middlewares: list[Any] = [error_middleware]
    users = load_users(config.users_file)
    if users:
        middlewares.append(basic_auth_middleware(users))
    if config.auth is not None:
        middlewares.append(auth_middleware(config.auth, registry_scopes, OPEN_PATHS, registry_refusal))
    middlewares.append(readiness_middleware)
    app = web.Application(middlewares=middlewares, client_max_size=MAX_REQUEST_BYTES)
    app[REGISTRY] = registry
    add_routes(app)
    log.info(
        "event=registry_auth enabled=%s users=%d api_keys=%d oidc=%s",
        bool(users) or config.auth is not None,
        len(users),
        len(config.auth.api_keys) if config.auth else 0,
        bool(config.auth and config.auth.oidc),
    )
    return app


async def _with_backoff(what: str, attempt: Callable[[], Awaitable[None]]) -> None:
    async for retry in AsyncRetrying(
        wait=wait_exponential(multiplier=0.5, max=10),
        retry=retry_if_not_exception_type((TopicLayoutError, KafkaConfigError, asyncio.CancelledError)),
        before_sleep=lambda state: log.warning(
            "event=kafka_unavailable step=%s attempt=%d error=%s",
            what,
            state.attempt_number,
            type(state.outcome.exception()).__name__ if state.outcome else "",
        ),
    ):
        with retry:
            await attempt()


async def serve(config: RegistryServerConfig, stop: asyncio.Event) -> None:
    state = RegistryState()
    store = SchemaLog(config.kafka, config.topic, state)
    service = RegistryService(state, store, config.max_schema_bytes)
    election = PrimaryElection(
        config.kafka, config.topic, config.election_group, config.url, on_change=service.follow_role
    )
    registry = Registry(service, election)
    app = build_app(config, registry)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=DRAIN_SECONDS)
    await runner.setup()
    try:
        tls = config.tls.server_context() if config.tls else None
        await web.TCPSite(runner, config.host, config.port, ssl_context=tls).start()
    except OSError as exc:
        await runner.cleanup()
        reason = bind_failure(exc)
        raise StatusPortBusy(config.host, config.port, reason, "registry port", "pass another --port") from None
    log.info("event=registry_listening url=%s topic=%s", config.url, config.topic)
    registry.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))

    async def connect() -> None:
        step = "load_schemas_topic"
        try:
            async with asyncio.timeout(config.startup_timeout):
                await _with_backoff(step, store.start)
                step = "join_election"
                await _with_backoff(step, election.start)
                step = "settle_election"
                await election.settled.wait()
        except TimeoutError:
            raise DependencyDown(
                f"registry not ready within {config.startup_timeout:g}s: Kafka {config.kafka.bootstrap_servers} "
                f"did not answer (step {step})"
            ) from None
        registry.ready = True
        log.info("event=registry_ready subjects=%d max_id=%d", len(state.subjects), state.max_id)

    connecting = asyncio.create_task(connect(), name="registry-connect")
    stopping = asyncio.create_task(stop.wait(), name="registry-stop")
    try:
        await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if connecting.done() and connecting.exception() is not None:
            raise connecting.exception()  # type: ignore[misc]
        await stop.wait()
    finally:
        log.info("event=registry_stopping")
        registry.ready = False
        connecting.cancel()
        stopping.cancel()
        await asyncio.gather(connecting, stopping, return_exceptions=True)
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("http", runner.cleanup),
            ("election", election.stop),
            ("service", service.close),
            ("store", store.stop),
            ("session", registry.session.close),
        ]
        took = []
        for name, step in steps:
            started = time.monotonic()
            await step()
            took.append(f"{name}_s={time.monotonic() - started:.2f}")
        log.info("event=registry_stopped %s", " ".join(took))


def run(config: RegistryServerConfig) -> None:
    """Serve until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, stop)

    asyncio.run(main())
