"""Pipeline throughput, latency and where the time goes, one run on one embedded broker, the same ~1 KB input records
(ERP orders, at least half of them with a note no other order has) for every scenario:

  (a)  raw confluent-kafka consume -> produce passthrough (the ceiling)
  (b)  Headwater on its default runtime: decode + transform + local enrichment (VADER, py3langid) + GX quality +
       encode; (b1) the same with one worker process; (b+cache) with the enrichment cache on (texts repeat)
  (f)  the same on the other runtime (Faust when direct is the default)
  (c)  the same stage functions in a Quix Streams application (own venv bench/.venv-quix, created on first run)
  (d)  Headwater with enrichment and quality off (the framework's own cost), default runtime; (e) the other runtime
and the end-to-end latency of (b) and (f) at a fixed input rate. Prints records/s, ratios, p50/p99, the targets, and
per scenario the wall time per record of each step of the micro-batches (summed over workers).
Usage: python bench/pipeline.py [--records 200000] [--workers 2] [--rate 5000] [--latency-seconds 10]
                                 [--quix-seconds 30] [--smoke]
  --smoke  2,000 records and seconds-long runs: checks every scenario still runs (tests/test_bench_pipeline.py)
  HEADWATER_BENCH_PROFILE=DIR  every Headwater worker writes a cProfile of its run to DIR/worker-PID.prof
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from services import cluster

from headwater.kafka.cluster import ensure_topics, wait_for_broker
from headwater.settings import HeadwaterSettings
from schemas import catalog
from schemas.client import registry_client
from schemas.serde import AvroSerializer
from streams.runtime.config import PipelineConfig, load_pipeline
from streams.runtime.engine import StageSwitches
from streams.runtime.latency import LatencyHistogram
from streams.runtime.runner import DEFAULT_RUNTIME, RUNTIMES
from streams.sample import NOTES, order

ROOT = Path(__file__).resolve().parent.parent
QUIX_VENV = ROOT / "bench" / ".venv-quix"
PARTITIONS = 2
STAGES = ("consume", "decode", "enrich", "quality", "encode", "deliver", "commit")


def build_inputs(client: Any, count: int, topic: str) -> tuple[list[tuple[bytes, bytes]], float]:
    """`count` ERP orders of about 1 KB (14-19 lines, two sentences of notes), messy like the demo sample.

    2,000 distinct orders repeat, but every other record's note carries its own order reference, so at least half
    the texts the enrichment sees are distinct and a result cache cannot flatter the figures.
    """
    rng = random.Random(42)
    serializer = AvroSerializer(client, f"{topic}-value", catalog.load_schema("erp/order"))
    now_ms = int(time.time() * 1000)
    distinct = [order(rng, index, now_ms) for index in range(2000)]
    for record in distinct:
        record["lines"] = [dict(record["lines"][0], line_number=n + 1, sku=f"SKU-{rng.randrange(10_000):05d}")
                           for n in range(rng.randrange(14, 20))]
        record["notes"] = " ".join(rng.choice([note for note in NOTES if note]) for _ in range(2))
    encoded = [serializer.encode(record) for record in distinct]
    json_size = sum(len(json.dumps(record, default=str)) for record in distinct) / len(distinct)
    items = []
    for index in range(count):
        template = distinct[index % len(distinct)]
        if index % 2:
            value = serializer.encode(dict(template, notes=f"{template['notes']} Order SO-{index:08d}."))
        else:
            value = encoded[index % len(encoded)]
        items.append((f"SO-{index:08d}".encode(), value))
    return items, json_size


def produce(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]], rate: float | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10, "batch.size": 1_000_000,
                         "queue.buffering.max.messages": 1_000_000, "queue.buffering.max.kbytes": 2_097_151})
    started = time.monotonic()
    for sent, (key, value) in enumerate(items, start=1):
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        if rate:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0.001:
                producer.poll(0)
                time.sleep(ahead)
    assert producer.flush(120) == 0


def passthrough(bootstrap: str, source: str, sink: str, count: int) -> float:
    """(a): consume -> produce with confluent-kafka, no processing; records/s until every output is acknowledged."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-raw-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.size": 1_000_000,
                         "queue.buffering.max.messages": 1_000_000})
    consumer.subscribe([source])
    seen, started = 0, 0.0
    while seen < count:
        messages = consumer.consume(2000, 0.5)
        started = started or time.monotonic()
        for message in messages:
            if message.error() is None:
                while True:
                    try:
                        producer.produce(sink, message.value(), message.key(), headers=message.headers())
                        break
                    except BufferError:
                        producer.poll(0.05)
                seen += 1
        producer.poll(0)
        consumer.commit(asynchronous=True)
    producer.flush(60)
    elapsed = time.monotonic() - started
    consumer.close()
    return count / elapsed


def bench_config(base: PipelineConfig, source: str, name: str, batch_size: int = 2000, linger_ms: int = 50,
                 cache: bool = False) -> PipelineConfig:
    enrich = [step.model_copy(update={"options": {**step.options, "cache": True}}) for step in base.enrich] \
        if cache else base.enrich
    return base.model_copy(update={
        "input": base.input.model_copy(update={"topics": [source]}),
        "output": base.output.model_copy(
            update={"topic": f"bench.{name}.enriched", "subject": "erp.orders.enriched-value"}
        ),
        "dead_letter_topic": f"bench.{name}.dlq",
        "consumer_group": f"bench-{name}-{uuid.uuid4().hex[:6]}",
        "batch": base.batch.model_copy(update={"size": batch_size, "linger_ms": linger_ms}),
        "enrich": enrich,
    })


def committed_total(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return sum(max(tp.offset, 0) for tp in found)
    finally:
        consumer.close()


@dataclass
class Measured:
    rate: float
    latency: LatencyHistogram
    stage_seconds: dict[str, float]
    records: int

    def per_record_us(self) -> str:
        """Wall time per record of each step, summed over the workers (steps overlap across workers)."""
        steps = [(stage, self.stage_seconds[stage]) for stage in STAGES if stage in self.stage_seconds]
        return " ".join(f"{stage}={seconds / self.records * 1e6:,.0f}" for stage, seconds in steps)


def headwater(config: PipelineConfig, settings: HeadwaterSettings, count: int, switches: StageSwitches,
              workers: int, tmp: Path, runtime: str, paced: tuple[list[tuple[bytes, bytes]], float] | None = None,
              ) -> Measured:
    """Run `workers` worker processes sharing the input until the group committed `count` offsets."""
    pipeline_file = tmp / f"{config.name}-{uuid.uuid4().hex[:6]}.yaml"
    pipeline_file.write_text(yaml.safe_dump(
        config.model_dump(mode="json", by_alias=True, exclude={"base_dir"}, exclude_none=True)))
    ready = [tmp / f"ready-{uuid.uuid4().hex[:6]}" for _ in range(workers)]
    processes = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "headwater_worker.py"), str(pipeline_file),
             settings.kafka.bootstrap_servers, settings.registry.url, "1" if switches.enrich else "0",
             "1" if switches.quality else "0", str(flag), runtime],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        for flag in ready
    ]
    try:
        deadline = time.monotonic() + 120
        while not all(flag.exists() for flag in ready) and time.monotonic() < deadline:
            time.sleep(0.05)
        if paced is not None:
            produce(settings.kafka.bootstrap_servers, config.input.topics[0], paced[0], paced[1])
        deadline = time.monotonic() + 900
        while committed_total(settings.kafka.bootstrap_servers, config.group, config.input.topics[0]) < count:
            if time.monotonic() > deadline or any(process.poll() is not None for process in processes):
                raise RuntimeError("the Headwater workers did not finish the input")
            time.sleep(0.1)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
    results = [json.loads(process.communicate(timeout=120)[0].strip().splitlines()[-1]) for process in processes]
    first = min(result["first"] for result in results if result["first"] is not None)
    last = max(result["last"] for result in results if result["last"] is not None)
    records = sum(result["records_in"] for result in results)
    assert records >= count
    latencies = LatencyHistogram()
    stage_seconds: defaultdict[str, float] = defaultdict(float)
    for result in results:
        latencies.merge(LatencyHistogram.from_json(result["latency_ms"]))
        for stage, seconds in result["stage_seconds"].items():
            stage_seconds[stage] += seconds
    return Measured(count / (last - first), latencies, stage_seconds, records)


def quix(bootstrap: str, registry: str, pipeline_file: Path, source: str, sink: str, count: int, max_seconds: float,
         enrich: bool, quality: bool) -> dict[str, float]:
    python = QUIX_VENV / "bin" / "python"
    installed = QUIX_VENV / ".installed"
    if not installed.exists():  # the stamp, not the interpreter: an interrupted install is redone
        print("creating bench/.venv-quix (quixstreams, confluent-kafka<2.13) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
        subprocess.run([str(QUIX_VENV / "bin" / "pip"), "install", "-q", "quixstreams", "confluent-kafka<2.13"],
                       check=True)
        installed.touch()
    site = next((QUIX_VENV / "lib").glob("python3*/site-packages"))
    project_site = next((Path(sys.prefix) / "lib").glob("python3*/site-packages"))
    (site / "headwater-project.pth").write_text(f"{ROOT}\n{project_site}\n")
    result = subprocess.run(
        [str(python), str(ROOT / "bench" / "quix_app.py"), bootstrap, registry, str(pipeline_file), source, sink,
         str(count), str(max_seconds), "1" if enrich else "0", "1" if quality else "0"],
        capture_output=True, text=True, check=False, timeout=max_seconds + 180,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"quix app failed ({result.returncode}): {result.stderr[-2000:]}")
    measured: dict[str, float] = json.loads(lines[-1])
    return measured


@dataclass(frozen=True)
class Sizes:
    records: int
    rate: float
    latency_seconds: float
    quix_seconds: float


def sizes(args: argparse.Namespace) -> Sizes:
    if args.smoke:
        return Sizes(records=2_000, rate=500.0, latency_seconds=2.0, quix_seconds=10.0)
    return Sizes(args.records, args.rate, args.latency_seconds, args.quix_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=5000.0, help="input rate of the latency run")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--quix-seconds", type=float, default=30.0, help="cap on each Quix run")
    parser.add_argument("--workers", type=int, default=2, help="Headwater worker processes sharing the input")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that every scenario runs")
    parser.add_argument("--bootstrap-servers", help="an existing cluster instead of an embedded broker")
    parser.add_argument("--registry-url", help="its schema registry (with --bootstrap-servers)")
    args = parser.parse_args()
    size = sizes(args)
    workers = 1 if args.smoke else args.workers
    default = DEFAULT_RUNTIME
    other = next(name for name in RUNTIMES if name != default)

    run = uuid.uuid4().hex[:6]
    source, latency_sources = f"bench.orders{run}.raw", (f"bench.latency{run}.raw", f"bench.latencyother{run}.raw")
    sinks = {name: f"bench.{name}{run}.enriched" for name in ("raw", "quix", "quixlite")}
    with tempfile.TemporaryDirectory(prefix="hw-bench-") as tmp, \
            cluster(args.bootstrap_servers, args.registry_url, Path(tmp)) as settings:
        bootstrap, registry_url = settings.kafka.bootstrap_servers, settings.registry.url
        admin = wait_for_broker(settings.kafka)
        ensure_topics(admin, [source, *latency_sources, *sinks.values()], PARTITIONS)
        client = registry_client(settings.registry)
        items, json_size = build_inputs(client, size.records, source)
        average = sum(len(value) for _, value in items[:2000]) / min(2000, len(items))
        print(f"broker {bootstrap}, registry {registry_url}; {size.records:,} records of {average:,.0f} bytes "
              f"Avro ({json_size:,.0f} bytes as JSON), {PARTITIONS} partitions, {os.cpu_count()} cores, "
              f"load {os.getloadavg()[0]:.2f}, default runtime {default}", flush=True)
        started = time.monotonic()
        produce(bootstrap, source, items)
        print(f"produced input in {time.monotonic() - started:.1f}s", flush=True)
        base = load_pipeline(ROOT / "streams" / "pipelines" / "erp_orders.yaml")
        rates: dict[str, float] = {}
        rates["a"] = passthrough(bootstrap, source, sinks["raw"], size.records)
        print(f"(a) raw confluent-kafka passthrough: {rates['a']:,.0f} records/s", flush=True)
        tmp_path = Path(tmp)
        full, lite = StageSwitches(), StageSwitches(enrich=False, quality=False)
        scenarios = [
            ("b", "full", full, default, workers, False, f"full pipeline, {default} (default)"),
            ("b1", "full1", full, default, 1, False, f"full pipeline, {default}"),
            ("b+cache", "fullcache", full, default, workers, True, "full pipeline, enrichment cache on"),
            ("f", "fullother", full, other, workers, False, f"full pipeline, {other} runtime"),
            ("d", "lite", lite, default, workers, False, f"no enrich/quality, {default} (default)"),
            ("e", "liteother", lite, other, workers, False, f"no enrich/quality, {other} runtime"),
        ]
        profiles: dict[str, Measured] = {}
        for key, name, switches, runtime, processes, cache, title in scenarios:
            measured = headwater(bench_config(base, source, name, cache=cache), settings, size.records,
                                 switches, processes, tmp_path, runtime)
            rates[key], profiles[key] = measured.rate, measured
            print(f"({key}) Headwater {title}, {processes} worker(s): {measured.rate:,.0f} records/s", flush=True)

        pipeline_file = Path(tmp) / "quix.yaml"
        pipeline_file.write_text(yaml.safe_dump(bench_config(base, source, "quix").model_dump(
            mode="json", by_alias=True, exclude={"base_dir"}, exclude_none=True)))
        quix_full = quix(bootstrap, registry_url, pipeline_file, source, sinks["quix"], size.records,
                         size.quix_seconds, True, True)
        rates["c"] = quix_full["rate"]
        print(f"(c) Quix Streams, same stages:      {rates['c']:,.0f} records/s "
              f"({quix_full['records']:,.0f} records in {quix_full['seconds']:.1f}s)", flush=True)
        quix_lite = quix(bootstrap, registry_url, pipeline_file, source, sinks["quixlite"], size.records,
                         size.quix_seconds, False, False)
        rates["c'"] = quix_lite["rate"]
        print(f"(c') Quix, no enrich/quality:       {quix_lite['rate']:,.0f} records/s", flush=True)

        latency_items = items[: int(size.rate * size.latency_seconds)]
        latency: dict[str, LatencyHistogram] = {}
        for key, topic, name, runtime in (("b", latency_sources[0], "latency", default),
                                          ("f", latency_sources[1], "latencyother", other)):
            latency[key] = headwater(bench_config(base, topic, name, linger_ms=20), settings, len(latency_items),
                                     full, workers, tmp_path, runtime,
                                     paced=(latency_items, size.rate)).latency
        print()
        print("records/s: " + " ".join(f"{key}={rate:,.0f}" for key, rate in rates.items()))
        ratios = [("b", "a"), ("b", "b1"), ("b+cache", "b"), ("b", "c"), ("d", "c'"), ("d", "a")]
        faust_ratios = [("b", "f"), ("d", "e")] if default == "faust" else [("f", "b"), ("e", "d")]
        print("ratios: " + " ".join(f"{top}/{bottom}={rates[top] / rates[bottom]:.3f}"
                                    for top, bottom in ratios + faust_ratios))
        print("wall time per record of each step, us (summed over workers):")
        for key, measured in profiles.items():
            print(f"  ({key}) {measured.per_record_us()}")
        for key, values in latency.items():
            print(f"({key}) end-to-end latency at {size.rate:,.0f} records/s over {values.count:,} outputs: "
                  f"p50={values.percentile(0.5):.0f} ms p99={values.percentile(0.99):.0f} ms")
        faust_key, faust_lite = ("b", "d") if default == "faust" else ("f", "e")
        direct_key, direct_lite = ("f", "e") if default == "faust" else ("b", "d")
        targets = [
            ("b >= 10,000/s", rates["b"] >= 10_000),
            ("d >= 1.5 x c'", rates["d"] >= 1.5 * rates["c'"]),
            ("faust >= 0.8 x direct (full)", rates[faust_key] >= 0.8 * rates[direct_key]),
            ("faust >= 0.8 x direct (no enrich/quality)", rates[faust_lite] >= 0.8 * rates[direct_lite]),
            ("p99 <= 250 ms (default runtime)", latency["b"].percentile(0.99) <= 250),
        ]
        print("targets: " + ", ".join(f"{name} {'met' if ok else 'MISSED'}" for name, ok in targets))


if __name__ == "__main__":
    main()
