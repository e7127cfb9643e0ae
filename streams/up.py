"""`headwater up`: everything on loopback — broker, registry, a messy sample, both pipelines, a DuckDB warehouse —
with progress, a summary, and everything it started stopped on the way out (Ctrl-C included)."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml
from prometheus_client import Counter as Counter_
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from headwater.kafka.cluster import ensure_topics, wait_for_broker
from headwater.ports import free_port
from headwater.settings import HeadwaterSettings, load_settings
from headwater.status import StatusServer
from headwater.status_thread import StatusThread
from headwater.statuspage.targets import DEPLOYMENT_FILE, write_deployment
from schemas.client import registry_client
from schemas.publish import register_all
from schemas.registry.process import RegistryProcess
from streams.broker import EmbeddedBroker
from streams.enrich import metrics as enrich_metrics
from streams.runtime.batches import WorkerOptions, WorkerStats
from streams.runtime.config import EnrichStep, PipelineConfig, load_pipeline
from streams.runtime.runner import DEFAULT_RUNTIME, RuntimeName, build_runtime
from streams.sample import generate
from streams.sample_loader import produce_sample

log = logging.getLogger(__name__)
PIPELINES_DIR = Path(__file__).parent / "pipelines"
RAW_PARTITIONS = 2
DEFAULT_PIPELINES = [PIPELINES_DIR / "crm_contacts.yaml", PIPELINES_DIR / "erp_orders.yaml"]
LLM_STEP = PIPELINES_DIR / "steps" / "crm_intent.yaml"


@dataclass
class UpOptions:
    data_dir: Path = Path(".headwater")
    records: int = 50_000
    seed: int = 7
    rate: float | None = None
    pipelines: list[Path] = field(default_factory=lambda: list(DEFAULT_PIPELINES))
    warehouse: bool = True
    timeout: float = 600.0
    runtime: RuntimeName = DEFAULT_RUNTIME
    startup_timeout: float = 300.0
    llm: bool = True
    status_host: str = "127.0.0.1"
    status_port: int = 9460
    keep: bool = False


def register_schemas(settings: HeadwaterSettings) -> int:
    outcomes = register_all(settings.registry)
    refused = [f"{outcome.entry.subject}: {outcome.detail}" for outcome in outcomes if not outcome.ok]
    if refused:
        raise RuntimeError(f"the registry refused schemas: {'; '.join(refused)}")
    return len(outcomes)


@dataclass
class Summary:
    stats: dict[str, WorkerStats]
    produced: Counter[str]
    seconds: float
    runtime: str = DEFAULT_RUNTIME
    warehouse: dict[str, int] = field(default_factory=dict)
    queries: list[tuple[str, list[str], list[tuple[object, ...]]]] = field(default_factory=list)
    enrichment: list[EnrichmentUse] = field(default_factory=list)


@dataclass(frozen=True)
class EnrichmentUse:
    """What one provider of one pipeline did during the run, as its metrics counted it."""

    pipeline: str
    provider: str
    calls: int
    cache_hits: int
    cost_usd: float


def _samples(counter: Counter_, suffix: str = "_total") -> list[tuple[dict[str, str], float]]:
    return [(sample.labels, sample.value) for family in counter.collect() for sample in family.samples
            if sample.name.endswith(suffix)]


def enrichment_use(pipelines: list[str]) -> list[EnrichmentUse]:
    """Calls, cache hits and cost per pipeline and provider, read from the enrichment metrics of this process."""
    calls: dict[tuple[str, str], float] = {}
    hits: dict[tuple[str, str], float] = {}
    cost: dict[tuple[str, str], float] = {}
    for labels, value in _samples(enrich_metrics.CALLS):
        if labels["outcome"] == "ok":
            key = (labels["pipeline"], labels["provider"])
            calls[key] = calls.get(key, 0) + value
    for labels, value in _samples(enrich_metrics.CACHE_HITS):
        hits[(labels["pipeline"], labels["provider"])] = value
    for labels, value in _samples(enrich_metrics.COST):
        key = (labels["pipeline"], labels["provider"])
        cost[key] = cost.get(key, 0) + value
    keys = sorted({*calls, *hits, *cost})
    return [
        EnrichmentUse(pipeline, provider, int(calls.get((pipeline, provider), 0)),
                      int(hits.get((pipeline, provider), 0)), cost.get((pipeline, provider), 0.0))
        for pipeline, provider in keys if pipeline in pipelines
    ]


def print_summary(console: Console, summary: Summary) -> None:
    table = Table(title=f"Headwater pipelines ({summary.runtime} runtime)", show_lines=False)
    for column in ("pipeline", "in", "out", "dead letters", "records/s", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right" if column != "pipeline" else "left")
    for name, stats in summary.stats.items():
        table.add_row(
            name, f"{stats.records_in:,}", f"{stats.records_out:,}", f"{stats.dead_lettered:,}",
            f"{stats.records_in / summary.seconds:,.0f}" if summary.seconds else "-",
            f"{stats.latency_ms.percentile(0.50):,.0f}", f"{stats.latency_ms.percentile(0.99):,.0f}",
        )
    console.print(table)
    reasons = Table(title="Dead letters by stage and reason")
    for column in ("pipeline", "stage", "reason", "records"):
        reasons.add_column(column, justify="right" if column == "records" else "left")
    for name, stats in summary.stats.items():
        for (stage, reason), count in sorted(stats.dead_letters.items(), key=lambda item: -item[1]):
            reasons.add_row(name, stage, reason, f"{count:,}")
    console.print(reasons)
    total_in = sum(stats.records_in for stats in summary.stats.values())
    total_out = sum(stats.records_out for stats in summary.stats.values())
    total_dead = sum(stats.dead_lettered for stats in summary.stats.values())
    console.print(
        f"records in {total_in:,} = out {total_out:,} + dead-lettered {total_dead:,} "
        f"({'holds' if total_in == total_out + total_dead else 'DOES NOT HOLD'}); "
        f"{total_in / summary.seconds:,.0f} records/s over {summary.seconds:.1f}s (latency includes the backlog "
        "of a sample produced as fast as possible)"
    )
    if summary.enrichment:
        used = Table(title="Enrichment (calls to services, answers from the cache, cost at list prices)")
        for column in ("pipeline", "provider", "calls", "cache hits", "cost USD"):
            used.add_column(column, justify="left" if column in ("pipeline", "provider") else "right")
        for use in summary.enrichment:
            used.add_row(use.pipeline, use.provider, f"{use.calls:,}", f"{use.cache_hits:,}", f"{use.cost_usd:.4f}")
        console.print(used)
    if summary.warehouse:
        console.print("warehouse rows: " + ", ".join(f"{topic} {rows:,}" for topic, rows in summary.warehouse.items()))
    for title, columns, rows in summary.queries:
        result = Table(title=title)
        for column in columns:
            result.add_column(column)
        for row in rows:
            result.add_row(*("" if value is None else str(value) for value in row))
        console.print(result)


# (title, table it reads, query); a query whose table got no rows (tiny samples) is skipped.
WAREHOUSE_QUERIES = [
    ("Contacts by country (DuckDB)", "crm_contacts_enriched",
     "SELECT country_code, count(*) AS contacts, round(avg(sentiment), 3) AS avg_sentiment, "
     "count(*) FILTER (WHERE quality = 'WARN') AS with_warnings FROM crm_contacts_enriched "
     "GROUP BY 1 ORDER BY 2 DESC LIMIT 8"),
    ("Intent from the LLM step (DuckDB)", "crm_contacts_enriched",
     "SELECT intent, count(*) AS contacts, round(avg(urgency), 1) AS avg_urgency FROM crm_contacts_enriched "
     "WHERE intent IS NOT NULL GROUP BY 1 ORDER BY 2 DESC"),
    ("Orders by currency (DuckDB)", "erp_orders_enriched",
     "SELECT currency, count(*) AS orders, sum(amount_minor) AS total_minor_units, "
     "mode(language) AS top_note_language FROM erp_orders_enriched GROUP BY 1 ORDER BY 2 DESC"),
]


def load_warehouse(database: Path, topics: list[str], settings: HeadwaterSettings, stop: threading.Event,
                   ) -> tuple[dict[str, int], list[tuple[str, list[str], list[tuple[object, ...]]]]]:
    import duckdb

    from connectors.sinks.duckdb import load_until_caught_up

    counts = load_until_caught_up(database, topics, kafka=settings.kafka, registry=settings.registry, stop=stop)
    queries: list[tuple[str, list[str], list[tuple[object, ...]]]] = []
    with duckdb.connect(str(database), read_only=True) as connection:
        tables = {row[0] for row in connection.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        for title, table, sql in WAREHOUSE_QUERIES:
            if table not in tables:
                continue
            cursor = connection.execute(sql)
            queries.append((title, [column[0] for column in cursor.description], cursor.fetchall()))
    return counts, queries


async def _run_pipelines(
    configs: list[PipelineConfig], settings: HeadwaterSettings, options: UpOptions, console: Console,
) -> Summary:
    stop = asyncio.Event()
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupted.set)
    runtime = build_runtime(
        options.runtime, configs, settings, WorkerOptions(startup_deadline_s=options.startup_timeout)
    )
    workers = runtime.pipelines
    running = asyncio.create_task(runtime.run(stop))
    stop_producing = threading.Event()

    def check_interrupted() -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt

    try:
        with console.status("starting the pipelines (schemas, quality suites, consumer groups)"):
            while not all(worker.ready for worker in workers):
                check_interrupted()
                if running.done():
                    break
                await asyncio.sleep(0.1)
        expected: Counter[str] = Counter()
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
            produce_bar = progress.add_task("produce sample", total=options.records)
            bars = {worker.config.name: progress.add_task(f"pipeline {worker.config.name}", total=None)
                    for worker in workers}
            started = time.monotonic()
            producing = asyncio.create_task(asyncio.to_thread(
                produce_sample,
                generate(options.records, seed=options.seed, undecodable_every=max(options.records // 20, 2)),
                settings.kafka,
                registry_client(settings.registry), None,
                lambda sent: progress.update(produce_bar, completed=sent), options.rate, stop_producing,
            ))
            deadline = time.monotonic() + options.timeout
            while time.monotonic() < deadline:
                check_interrupted()
                if running.done():
                    running.result()
                    raise RuntimeError("the pipelines stopped before the sample was processed")
                if producing.done() and not expected:
                    expected = producing.result()
                    progress.update(produce_bar, completed=options.records)
                    for worker in workers:
                        total = sum(expected[topic] for topic in worker.config.input.topics)
                        progress.update(bars[worker.config.name], total=total)
                for worker in workers:
                    progress.update(bars[worker.config.name], completed=worker.stats.records_in)
                if expected and all(
                    worker.stats.records_in >= sum(expected[topic] for topic in worker.config.input.topics)
                    for worker in workers
                ):
                    break
                await asyncio.sleep(0.2)
            else:
                raise TimeoutError(f"the pipelines did not process the sample within {options.timeout:.0f}s")
            elapsed = time.monotonic() - started
    finally:
        stop_producing.set()
        stop.set()
        await asyncio.gather(running, return_exceptions=True)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    labels = [worker.config.label for worker in workers]
    return Summary({worker.config.label: worker.stats for worker in workers}, expected, elapsed, options.runtime,
                   enrichment=enrichment_use(labels))


def add_llm_step(configs: list[PipelineConfig], base_url: str) -> None:
    """The CRM contacts pipeline's optional LLM step, against `base_url` (the local fake)."""
    step = yaml.safe_load(LLM_STEP.read_text(encoding="utf-8"))
    step["options"].update({"base_url": base_url, "api_key": "offline-demo"})
    for config in configs:
        if config.name == "crm_contacts":
            config.enrich.append(EnrichStep.model_validate(step))


class OfflineLlm:
    """The OpenAI-compatible fake `up` starts for the LLM step, so the demo makes no call off this machine."""

    def __init__(self, log_file: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.fake_openai", "--port", str(self.port), "--latency-ms", "20"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the offline LLM exited with {self.process.returncode}; see {self.log_file}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the offline LLM did not answer within {timeout:.0f}s") from None
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def hold_until_interrupted() -> None:
    """Block until Ctrl-C or SIGTERM: `--keep` leaves the page (and broker, registry) up after the summary."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        return
    finally:
        signal.signal(signal.SIGTERM, previous)


def up(options: UpOptions, console: Console) -> Summary:
    """Start what is needed, run the sample through, summarise, and stop everything started here."""
    configs = [load_pipeline(path) for path in options.pipelines]
    data_dir = options.data_dir.resolve()
    broker = EmbeddedBroker(data_dir / "broker", port=free_port(), start_timeout=options.startup_timeout)
    registry: RegistryProcess | None = None
    llm = OfflineLlm(data_dir / "offline-llm.log") if options.llm else None
    stop_loading = threading.Event()
    page: StatusThread | None = None
    try:
        if llm is not None:
            with console.status("starting the offline LLM (an OpenAI-compatible fake)"):
                llm.start(options.startup_timeout)
            add_llm_step(configs, llm.base_url)
            console.print(f"offline LLM on {llm.base_url} for crm_contacts' intent and urgency step")
        with console.status("starting the embedded Kafka broker"):
            status = broker.start()
        assert status.bootstrap is not None
        console.print(f"broker on {status.bootstrap} (data in {data_dir})")
        registry = RegistryProcess(status.bootstrap, data_dir / "registry.log")
        with console.status("starting the schema registry"):
            registry.start(timeout=options.startup_timeout)
        settings = load_settings(
            kafka={"bootstrap.servers": status.bootstrap}, registry={"url": registry.url},
            enrich={"cache_dir": str(data_dir / "cache")},
        )
        admin = wait_for_broker(settings.kafka, options.startup_timeout)
        ensure_topics(admin, sorted({topic for config in configs for topic in config.input.topics}), RAW_PARTITIONS)
        console.print(f"registry on {registry.url}; registered {register_schemas(settings)} schemas")
        page = StatusThread(StatusServer(lambda: True, options.status_host, options.status_port,
                                         registry_url=registry.url, title="Headwater demo"))
        address = page.start()
        write_deployment(data_dir, [f"{address}metrics"], registry.url)
        console.print(f"status page on {address} (live while `up` runs{'' if options.keep else '; --keep: after it'})",
                      highlight=False)
        summary = asyncio.run(_run_pipelines(configs, settings, options, console))
        if options.warehouse:
            with console.status("loading the enriched topics into DuckDB"):
                summary.warehouse, summary.queries = load_warehouse(
                    data_dir / "warehouse.duckdb", [config.output.topic for config in configs], settings, stop_loading
                )
        print_summary(console, summary)
        if options.keep and page is not None:
            console.print(f"status page stays on http://{page.server.host}:{page.server.port}/; Ctrl-C stops "
                          "everything", highlight=False)
            hold_until_interrupted()
        return summary
    finally:
        stop_loading.set()
        if page is not None:
            page.stop()
            (data_dir / DEPLOYMENT_FILE).unlink(missing_ok=True)
        if registry is not None and registry.process is not None:
            registry.terminate()
        if llm is not None:
            llm.stop()
        broker.stop()
