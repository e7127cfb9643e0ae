"""The webhook source served in-process for the tests: on a free port, producing to the real broker through its
emitter, optionally over TLS; a client session waits until `/healthz` answers."""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from connectors.source_loop import AsyncEmitter
from connectors.sources.webhook import WebhookConfig, WebhookSource
from headwater.ports import free_port
from headwater.settings import KafkaSettings, RegistrySettings


@asynccontextmanager
async def serving(
    bootstrap: str, registry_url: str, ack_timeout_ms: int = 10_000, client_tls: ssl.SSLContext | None = None,
    **config: Any,
) -> AsyncIterator[tuple[aiohttp.ClientSession, str, str]]:
    """A webhook source on a free port with its emitter; yields a client session, the base URL and the source's
    name. With `client_tls` (the server's `tls` being in `config`) the URL is https and the session trusts it."""
    name = f"wh-{uuid.uuid4().hex[:8]}"
    port = free_port()
    source = WebhookSource(name, WebhookConfig.model_validate({"port": port, **config}))
    registry = RegistrySettings.model_validate({"url": registry_url})
    kafka = KafkaSettings.model_validate({"bootstrap.servers": bootstrap})
    emitter = AsyncEmitter(name, kafka=kafka, registry=registry, ack_timeout_ms=ack_timeout_ms)
    stop = asyncio.Event()
    server = asyncio.create_task(source.serve(emitter.emit, stop, registry))
    base = f"{'https' if client_tls else 'http'}://127.0.0.1:{port}"
    connector = aiohttp.TCPConnector(ssl=client_tls if client_tls else True)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30), connector=connector) as session:
            deadline = time.monotonic() + 15
            while True:
                try:
                    async with session.get(f"{base}/healthz") as answer:
                        if answer.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    if time.monotonic() > deadline or server.done():
                        raise
                await asyncio.sleep(0.05)
            yield session, base, name
    finally:
        stop.set()
        await server
        await asyncio.to_thread(emitter.close)
