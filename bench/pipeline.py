"""Pipeline throughput and latency, one run on one embedded broker, the same ~1 KB input records for every scenario:

  (a)  raw confluent-kafka consume -> produce passthrough (the ceiling)
  (b)  Headwater on its default Faust runtime: decode + transform + local enrichment (VADER, py3langid) + GX
       quality + encode, in Faust agents taking micro-batches
  (b') the same on the direct runtime (`--runtime direct`, a confluent-kafka consume loop, no Faust)
  (c)  the same stage functions in a Quix Streams application (own venv bench/.venv-quix, created on first run)
  (d)  Headwater (Faust runtime) with enrichment and quality off (the framework's own cost); (d') the same, direct
and the end-to-end latency of (b) at a fixed input rate. Prints records/s, ratios, p50/p99.
Usage: python bench/pipeline.py [--records 200000] [--workers 2] [--rate 5000] [--latency-seconds 10]
                                 [--quix-seconds 30]
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
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, Producer, TopicPartition

from headwater.kafka.cluster import ensure_topics, wait_for_broker
from headwater.ports import free_port
from headwater.settings import HeadwaterSettings, load_settings
from schemas import catalog
from schemas.client import registry_client
from schemas.registry.process import RegistryProcess
from schemas.serde import AvroSerializer
from streams.broker import EmbeddedBroker
from streams.runtime.config import PipelineConfig, load_pipeline
from streams.runtime.engine import StageSwitches
from streams.runtime.latency import LatencyHistogram
from streams.sample import NOTES, order

ROOT = Path(__file__).resolve().parent.parent
QUIX_VENV = ROOT / "bench" / ".venv-quix"
PARTITIONS = 2


def build_inputs(client: Any, count: int, topic: str) -> tuple[list[tuple[bytes, bytes]], float]:
    """`count` ERP orders of about 1 KB (14-19 lines, two sentences of notes), messy like the demo sample."""
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
    return [(f"SO-{index:08d}".encode(), encoded[index % len(encoded)]) for index in range(count)], json_size


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
                 ) -> PipelineConfig:
    return base.model_copy(update={
        "input": base.input.model_copy(update={"topics": [source]}),
        "output": base.output.model_copy(
            update={"topic": f"bench.{name}.enriched", "subject": "erp.orders.enriched-value"}
        ),
        "dead_letter_topic": f"bench.{name}.dlq",
        "consumer_group": f"bench-{name}-{uuid.uuid4().hex[:6]}",
        "batch": base.batch.model_copy(update={"size": batch_size, "linger_ms": linger_ms}),
    })


def committed_total(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return sum(max(tp.offset, 0) for tp in found)
    finally:
        consumer.close()


def headwater(config: PipelineConfig, settings: HeadwaterSettings, count: int, switches: StageSwitches,
              workers: int, tmp: Path, paced: tuple[list[tuple[bytes, bytes]], float] | None = None,
              runtime: str = "faust") -> tuple[float, LatencyHistogram]:
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
    assert sum(result["records_in"] for result in results) >= count
    latencies = LatencyHistogram()
    for result in results:
        latencies.merge(LatencyHistogram.from_json(result["latency_ms"]))
    return count / (last - first), latencies


def quix(bootstrap: str, registry: str, pipeline_file: Path, source: str, sink: str, count: int, max_seconds: float,
         enrich: bool, quality: bool) -> dict[str, float]:
    python = QUIX_VENV / "bin" / "python"
    if not python.exists():
        print("creating bench/.venv-quix (quixstreams, confluent-kafka<2.13) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
        subprocess.run([str(QUIX_VENV / "bin" / "pip"), "install", "-q", "quixstreams", "confluent-kafka<2.13"],
                       check=True)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=5000.0, help="input rate of the latency run")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--quix-seconds", type=float, default=30.0, help="cap on each Quix run")
    parser.add_argument("--workers", type=int, default=2, help="Headwater worker processes sharing the input")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hw-bench-") as tmp:
        broker = EmbeddedBroker(Path(tmp) / "broker", port=free_port(), heap="1g")
        registry: RegistryProcess | None = None
        try:
            status = broker.start()
            assert status.bootstrap is not None
            bootstrap = status.bootstrap
            registry = RegistryProcess(bootstrap, Path(tmp) / "registry.log")
            registry.start()
            settings = load_settings(kafka={"bootstrap.servers": bootstrap}, registry={"url": registry.url})
            admin = wait_for_broker(settings.kafka)
            source = "bench.orders.raw"
            ensure_topics(admin, [source, "bench.raw.enriched", "bench.quix.enriched", "bench.quixlite.enriched",
                                  "bench.latency.raw", "bench.latencydirect.raw"], PARTITIONS)
            client = registry_client(settings.registry)
            items, json_size = build_inputs(client, args.records, source)
            size = sum(len(value) for _, value in items[:2000]) / 2000
            print(f"broker {bootstrap}, registry {registry.url}; {args.records:,} records of {size:,.0f} bytes "
                  f"Avro ({json_size:,.0f} bytes as JSON), {PARTITIONS} partitions, {os.cpu_count()} cores", flush=True)
            started = time.monotonic()
            produce(bootstrap, source, items)
            print(f"produced input in {time.monotonic() - started:.1f}s", flush=True)

            base = load_pipeline(ROOT / "streams" / "pipelines" / "erp_orders.yaml")
            rates: dict[str, float] = {}
            rates["a"] = passthrough(bootstrap, source, "bench.raw.enriched", args.records)
            print(f"(a) raw confluent-kafka passthrough: {rates['a']:,.0f} records/s", flush=True)
            tmp_path = Path(tmp)
            lite = StageSwitches(enrich=False, quality=False)
            scenarios = [("b", "full", StageSwitches(), "faust", "Headwater full pipeline, Faust runtime"),
                         ("b'", "fulldirect", StageSwitches(), "direct", "Headwater full pipeline, direct runtime"),
                         ("d", "lite", lite, "faust", "Headwater no enrich/quality, Faust runtime"),
                         ("d'", "litedirect", lite, "direct", "Headwater no enrich/quality, direct runtime")]
            for key, name, switches, runtime, title in scenarios:
                rates[key], _ = headwater(bench_config(base, source, name), settings, args.records, switches,
                                          args.workers, tmp_path, runtime=runtime)
                print(f"({key}) {title}, {args.workers} worker(s): {rates[key]:,.0f} records/s", flush=True)

            pipeline_file = Path(tmp) / "quix.yaml"
            pipeline_file.write_text(yaml.safe_dump(bench_config(base, source, "quix").model_dump(
                mode="json", by_alias=True, exclude={"base_dir"}, exclude_none=True)))
            quix_full = quix(bootstrap, registry.url, pipeline_file, source, "bench.quix.enriched", args.records,
                             args.quix_seconds, True, True)
            rates["c"] = quix_full["rate"]
            print(f"(c) Quix Streams, same stages:      {rates['c']:,.0f} records/s "
                  f"({quix_full['records']:,.0f} records in {quix_full['seconds']:.1f}s)", flush=True)
            quix_lite = quix(bootstrap, registry.url, pipeline_file, source, "bench.quixlite.enriched", args.records,
                             args.quix_seconds, False, False)
            rates["c_lite"] = quix_lite["rate"]
            print(f"(c') Quix, no enrich/quality:       {rates['c_lite']:,.0f} records/s", flush=True)

            latency_items = items[: int(args.rate * args.latency_seconds)]
            latency: dict[str, LatencyHistogram] = {}
            for key, topic, name, runtime in (("b", "bench.latency.raw", "latency", "faust"),
                                              ("b'", "bench.latencydirect.raw", "latencydirect", "direct")):
                _, latency[key] = headwater(bench_config(base, topic, name, linger_ms=20), settings,
                                            len(latency_items), StageSwitches(), args.workers, tmp_path,
                                            paced=(latency_items, args.rate), runtime=runtime)
            print()
            print("records/s: " + " ".join(f"{key}={rate:,.0f}" for key, rate in rates.items()))
            ratios = [("b", "a"), ("b", "c"), ("d", "a"), ("b'", "b"), ("d'", "d"), ("b'", "c"), ("d", "c_lite")]
            print("ratios: " + " ".join(f"{top}/{bottom}={rates[top] / rates[bottom]:.3f}" for top, bottom in ratios))
            for key, values in latency.items():
                print(f"({key}) end-to-end latency at {args.rate:,.0f} records/s over {values.count:,} outputs: "
                      f"p50={values.percentile(0.5):.0f} ms p99={values.percentile(0.99):.0f} ms")
            latencies = latency["b"]
            targets = [("b >= 10,000/s", rates["b"] >= 10_000), ("b/c >= 1.0", rates["b"] >= rates["c"]),
                       ("d >= 40,000/s", rates["d"] >= 40_000), ("p99 < 250 ms", latencies.percentile(0.99) < 250)]
            print("targets: " + ", ".join(f"{name} {'met' if ok else 'MISSED'}" for name, ok in targets))
        finally:
            if registry is not None:
                registry.terminate()
            broker.stop()


if __name__ == "__main__":
    main()
