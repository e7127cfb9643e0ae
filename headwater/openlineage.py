"""OpenLineage run events (the `openlineage-python` client) for pipelines and connectors.

Each run is START when it starts, RUNNING every `running_interval_s`, COMPLETE or FAIL when it stops, with its
input and output datasets: topics (namespace `kafka://<bootstrap>`, the schema facet from the registry) and
warehouse tables (the schema facet from their columns). Events are built and sent from one background thread, so
emitting never blocks the caller; a receiver that is down or refuses is logged and the run goes on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import error_message_run, schema_dataset
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport
from openlineage.client.transport.transport import Transport

from headwater.settings import OpenLineageSettings

log = logging.getLogger(__name__)
PRODUCER = "https://github.com/headwater/headwater"
_QUEUE_SIZE = 1000


@dataclass(frozen=True)
class DatasetRef:
    """A dataset as OpenLineage names it, with its fields (name, type) for the schema facet."""

    namespace: str
    name: str
    fields: tuple[tuple[str, str], ...] = ()

    def facets(self) -> dict[str, schema_dataset.SchemaDatasetFacet]:
        if not self.fields:
            return {}
        return {"schema": schema_dataset.SchemaDatasetFacet(
            fields=[schema_dataset.SchemaDatasetFacetFields(name=name, type=kind) for name, kind in self.fields]
        )}


def kafka_namespace(bootstrap_servers: str) -> str:
    """`kafka://<first bootstrap server>`, as OpenLineage names a Kafka cluster."""
    return f"kafka://{bootstrap_servers.split(',')[0].strip()}"


Datasets = Callable[[], Sequence[DatasetRef]]


def _transport(settings: OpenLineageSettings) -> Transport:
    if settings.transport == "file":
        assert settings.path is not None
        settings.path.parent.mkdir(parents=True, exist_ok=True)
        return FileTransport(FileConfig(log_file_path=str(settings.path), append=True))
    assert settings.url is not None
    auth = ApiKeyTokenProvider({"apiKey": settings.api_key.get_secret_value()}) if settings.api_key else None
    config = HttpConfig(url=settings.url, endpoint=settings.endpoint, timeout=settings.timeout_s,
                        retry={"total": 1, "connect": 1, "read": 1, "backoff_factor": 0.1,
                               "status_forcelist": [500, 502, 503, 504], "allowed_methods": ["POST"]})
    if auth is not None:
        config.auth = auth
    return HttpTransport(config)


@dataclass
class LineageRun:
    """One run of one job; its datasets are resolved when each event is built, in the emitter's thread."""

    job: str
    inputs: Datasets
    outputs: Datasets
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    last_sent: float = 0.0

    _resolved: tuple[Sequence[DatasetRef], Sequence[DatasetRef]] | None = field(default=None, init=False, repr=False)

    def datasets(self, state: RunState) -> tuple[Sequence[DatasetRef], Sequence[DatasetRef]]:
        """Inputs and outputs, looked up again for START and the end (a schema may be registered meanwhile);
        RUNNING events reuse the last ones, so a short interval does not load the registry."""
        if self._resolved is None or state != RunState.RUNNING:
            self._resolved = (self.inputs(), self.outputs())
        return self._resolved

    def event(self, namespace: str, state: RunState, error: str | None = None) -> RunEvent:
        run_facets = {"errorMessage": error_message_run.ErrorMessageRunFacet(
            message=error, programmingLanguage="python")} if error else {}
        inputs, outputs = self.datasets(state)
        return RunEvent(
            eventType=state,
            eventTime=datetime.now(UTC).isoformat(),
            run=Run(runId=self.run_id, facets=run_facets),  # type: ignore[arg-type]
            job=Job(namespace=namespace, name=self.job),
            inputs=[InputDataset(namespace=d.namespace, name=d.name, facets=d.facets())  # type: ignore[arg-type]
                    for d in inputs],
            outputs=[OutputDataset(namespace=d.namespace, name=d.name, facets=d.facets())  # type: ignore[arg-type]
                     for d in outputs],
            producer=PRODUCER,
        )


class LineageEmitter:
    """Sends the run events of one process from a background thread; `disabled` when no transport is set."""

    def __init__(self, settings: OpenLineageSettings) -> None:
        self.settings = settings
        self._client = OpenLineageClient(transport=_transport(settings)) if settings.transport != "none" else None
        self._queue: queue.Queue[tuple[LineageRun, RunState, str | None] | None] = queue.Queue(_QUEUE_SIZE)
        self._running: dict[str, LineageRun] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if self._client is not None:
            self._thread = threading.Thread(target=self._work, name="openlineage", daemon=True)
            self._thread.start()

    @property
    def enabled(self) -> bool:
        """Whether events go anywhere; callers skip resolving datasets when they do not."""
        return self._client is not None

    def start(self, run: LineageRun) -> None:
        with self._lock:
            self._running[run.run_id] = run
        self._put(run, RunState.START)

    def complete(self, run: LineageRun) -> None:
        self._finish(run, RunState.COMPLETE, None)

    def fail(self, run: LineageRun, error: str) -> None:
        self._finish(run, RunState.FAIL, error)

    @contextmanager
    def reporting(self, runs: Sequence[LineageRun]) -> Iterator[None]:
        """START every run; COMPLETE them when the block ends, FAIL them (with the reason) when it raises. The
        caller then `close`s the emitter (from a thread of its own in async code: it waits for the deliveries)."""
        for run in runs:
            self.start(run)
        try:
            yield
        except BaseException as exc:
            for run in runs:
                self.fail(run, f"{type(exc).__name__}: {exc}")
            raise
        else:
            for run in runs:
                self.complete(run)

    def _finish(self, run: LineageRun, state: RunState, error: str | None) -> None:
        with self._lock:
            self._running.pop(run.run_id, None)
        self._put(run, state, error)

    def _put(self, run: LineageRun, state: RunState, error: str | None = None) -> None:
        if self._client is None:
            return
        try:
            self._queue.put_nowait((run, state, error))
        except queue.Full:
            log.warning("event=openlineage_dropped job=%s state=%s reason=queue_full", run.job, state.value)

    def _work(self) -> None:
        assert self._client is not None
        interval = self.settings.running_interval_s
        while True:
            try:
                item = self._queue.get(timeout=interval / 4 if interval else None)
            except queue.Empty:
                item = None
                self._heartbeat(interval)
                continue
            if item is None:
                return
            run, state, error = item
            run.last_sent = time.monotonic()
            self._send(run, state, error)

    def _heartbeat(self, interval: float) -> None:
        with self._lock:
            due = [run for run in self._running.values() if time.monotonic() - run.last_sent >= interval]
        for run in due:
            run.last_sent = time.monotonic()
            self._send(run, RunState.RUNNING, None)

    def _send(self, run: LineageRun, state: RunState, error: str | None) -> None:
        assert self._client is not None
        try:
            self._client.emit(run.event(self.settings.namespace, state, error))
        # Lineage is a side channel: whatever the receiver, the registry or the transport raise, the run goes on.
        except Exception as exc:
            log.warning("event=openlineage_failed job=%s state=%s error_class=%s reason=%s", run.job, state.value,
                        type(exc).__name__, " ".join(str(exc).split())[:200])

    def close(self, timeout: float | None = None) -> None:
        """Send what is queued (at most `timeout`, default the delivery timeout twice) and stop the thread."""
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=1)
        except queue.Full:
            log.warning("event=openlineage_dropped reason=queue_full_at_close")
        self._thread.join(timeout if timeout is not None else 2 * self.settings.timeout_s)
