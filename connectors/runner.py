"""`headwater connect run CONFIG.yaml [...]`: validate every file completely, then run its connectors.

A config file:

    kafka: {bootstrap.servers: 127.0.0.1:9092}
    registry: {url: http://127.0.0.1:8081}
    connectors:
      - name: erp-orders            # unique; the key of this source's cursor in _headwater.connect-offsets
        connector: sql              # see `headwater connect list`
        config: {url: "postgresql+psycopg://erp@db/erp", tables: [...]}

`${VAR}` anywhere in the file is replaced by the environment variable VAR, so secrets stay out of the file.
Kafka and registry settings follow the usual precedence (flag > HEADWATER_* environment > file > default).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.base import Connector, PollingSource, PushSource, Sink
from connectors.connector_index import UnknownConnectorError, lookup
from connectors.lineage_events import connector_run, refresh_outputs
from connectors.offsets import OffsetStore
from connectors.sink_loop import SinkLoop
from connectors.source_loop import AsyncEmitter, SourceLoop
from headwater.dependencies import DependencyDown
from headwater.kafka import cluster
from headwater.openlineage import LineageEmitter, LineageRun
from headwater.settings import HeadwaterSettings, RegistrySettings, first_error, layered, settings_from_data
from headwater.status import StatusPortBusy, StatusServer
from schemas.client import registry_client, wait_for_registry

log = logging.getLogger(__name__)
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(ValueError):
    """A config file that cannot run; the message names the file and the field."""


class ConnectorEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Unique name of this connector.")
    connector: str = Field(description="Connector type, as listed by `headwater connect list`.")
    config: dict[str, Any] = Field(default_factory=dict, description="The connector's own settings.")


class RunFile(HeadwaterSettings):
    connectors: list[ConnectorEntry] = Field(min_length=1)


@dataclass
class RunPlan:
    path: Path
    settings: HeadwaterSettings
    connectors: list[Connector[Any]]


def _expand(text: str, path: Path) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"{path}: environment variable {name} is not set (referenced as ${{{name}}})")
        return os.environ[name]

    return _VARIABLE.sub(value, text)


def _settings(path: Path, data: dict[str, Any], overrides: dict[str, Any]) -> RunFile:
    try:
        return settings_from_data(RunFile, data, **overrides)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {first_error(exc)}") from exc


def load_plan(
    path: Path, overrides: dict[str, Any] | None = None, shared: dict[str, Any] | None = None
) -> RunPlan:
    """Read, expand and validate one config file; nothing is started. Raises ConfigError naming the field.

    `shared` is the data of a settings file (`--config`) under the file's own kafka and registry sections."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        data = yaml.safe_load(_expand(path.read_text(encoding="utf-8"), path))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with a `connectors` list")
    settings = _settings(path, layered(shared or {}, data), overrides or {})
    connectors: list[Connector[Any]] = []
    seen: set[str] = set()
    for index, entry in enumerate(settings.connectors):
        where = f"connectors[{index}]"
        if entry.name in seen:
            raise ConfigError(f"{path}: {where}.name: connector name {entry.name!r} is used twice")
        seen.add(entry.name)
        try:
            cls = lookup(entry.connector)
        except UnknownConnectorError as exc:
            raise ConfigError(f"{path}: {where}.connector: {exc}") from exc
        try:
            config = cls.Config.model_validate(entry.config)
        except ValidationError as exc:
            raise ConfigError(f"{path}: {first_error(exc, f'{where}.config')}") from exc
        connectors.append(cls(entry.name, config))
    return RunPlan(path, HeadwaterSettings(kafka=settings.kafka, registry=settings.registry,
                                           openlineage=settings.openlineage), connectors)


class Runner:
    """Runs the connectors of validated plans, each in its own thread (push sources share one event loop),
    until `stop` is set or one of them fails for good."""

    def __init__(
        self,
        plans: Sequence[RunPlan],
        status_port: int | None = None,
        status_host: str = "127.0.0.1",
        startup_timeout_s: float = 300.0,
    ) -> None:
        self.plans = plans
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.status_port = status_port
        self.status_host = status_host
        self.startup_timeout_s = startup_timeout_s
        self._status_bound = threading.Event()
        self._status_error: StatusPortBusy | None = None
        self._threads: list[threading.Thread] = []
        self._connector_threads: list[threading.Thread] = []

    def ready(self) -> bool:
        """Every connector thread is running and none has failed."""
        threads = self._connector_threads
        return bool(threads) and not self.failures and all(thread.is_alive() for thread in threads)

    async def _serve_status(self, port: int) -> None:
        registry_url = self.plans[0].settings.registry.url if self.plans else None
        server = StatusServer(
            self.ready, self.status_host, port, registry_url=registry_url, title="Headwater connectors"
        )
        try:
            self.status_port = await server.start()
        except StatusPortBusy as exc:
            self._status_error = exc
            return
        finally:
            self._status_bound.set()
        try:
            await asyncio.to_thread(self.stop.wait)
        finally:
            await server.stop()

    def _start_status(self, port: int) -> None:
        """The status endpoints, before any connector starts; StatusPortBusy when the port is taken."""
        self._start("status", asyncio.run, self._serve_status(port))
        self._status_bound.wait()
        if self._status_error is not None:
            raise self._status_error

    def _wait_for_dependencies(self) -> None:
        """Every plan's broker and registry answer within the start-up timeout (DependencyDown otherwise)."""
        give_up_at = time.monotonic() + self.startup_timeout_s
        for plan in self.plans:
            remaining = max(0.1, give_up_at - time.monotonic())
            cluster.wait_for_broker(plan.settings.kafka, remaining, self.stop)
            remaining = max(0.1, give_up_at - time.monotonic())
            registry = plan.settings.registry
            wait_for_registry(registry_client(registry), registry.url, remaining, self.stop)

    def _guard(self, name: str, target: Any, *args: Any) -> None:
        try:
            target(*args)
        except Exception as exc:
            log.error("event=connector_failed connector=%s error_class=%s reason=%s", name, type(exc).__name__, exc)
            self.failures.append(f"{name}: {exc}")
            self.stop.set()

    def _start(self, name: str, target: Any, *args: Any) -> threading.Thread:
        thread = threading.Thread(target=self._guard, args=(name, target, *args), name=f"connector-{name}")
        thread.start()
        self._threads.append(thread)
        return thread

    def run(self) -> None:
        loops: list[SourceLoop | SinkLoop | AsyncEmitter | Connector[Any]] = []
        push: list[tuple[PushSource[Any], AsyncEmitter, RegistrySettings]] = []
        emitters: list[LineageEmitter] = []
        runs: list[tuple[LineageEmitter, LineageRun, Connector[Any]]] = []
        try:
            if self.status_port is not None:
                self._start_status(self.status_port)
            try:
                self._wait_for_dependencies()
            except DependencyDown:
                if self.stop.is_set():  # interrupted while waiting: a clean stop, not a failure
                    return
                raise
            for plan in self.plans:
                offsets = OffsetStore(plan.settings.kafka)
                emitters.append(LineageEmitter(plan.settings.openlineage))
                for connector in plan.connectors:
                    if emitters[-1].enabled:  # a sink's run reads its tables: not when no event goes anywhere
                        runs.append((emitters[-1], connector_run(connector, plan.settings), connector))
                        emitters[-1].start(runs[-1][1])
                    if isinstance(connector, PollingSource):
                        source = SourceLoop(
                            connector, kafka=plan.settings.kafka, registry=plan.settings.registry, offsets=offsets
                        )
                        loops.append(source)
                        self._connector_threads.append(self._start(connector.name, source.run, self.stop))
                    elif isinstance(connector, Sink):
                        sink = SinkLoop(connector, kafka=plan.settings.kafka, registry=plan.settings.registry)
                        loops.append(sink)
                        self._connector_threads.append(self._start(connector.name, sink.run, self.stop))
                    elif isinstance(connector, PushSource):
                        emitter = AsyncEmitter(
                            connector.name, kafka=plan.settings.kafka, registry=plan.settings.registry
                        )
                        loops.append(emitter)
                        loops.append(connector)
                        push.append((connector, emitter, plan.settings.registry))
            if push:
                self._connector_threads.append(self._start("push-sources", asyncio.run, self._serve(push)))
            self.stop.wait()
        finally:
            self.stop.set()
            for thread in self._threads:
                thread.join()
            self._report_end(runs)
            for item in loops:
                item.close()
            for lineage in emitters:
                lineage.close()

    def _report_end(self, runs: Sequence[tuple[LineageEmitter, LineageRun, Connector[Any]]]) -> None:
        for emitter, run, connector in runs:
            refresh_outputs(run, connector)
            if self.failures:
                emitter.fail(run, "; ".join(self.failures))
            else:
                emitter.complete(run)

    async def _serve(self, push: Sequence[tuple[PushSource[Any], AsyncEmitter, RegistrySettings]]) -> None:
        stop = asyncio.Event()

        async def watch() -> None:
            await asyncio.to_thread(self.stop.wait)
            stop.set()

        watcher = asyncio.create_task(watch())
        try:
            await asyncio.gather(*(source.serve(emitter.emit, stop, registry) for source, emitter, registry in push))
        finally:
            watcher.cancel()
