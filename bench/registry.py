"""Benchmark the schema registry and the Avro serde.

Starts its own Kafka broker (temp dir) and its own `headwater registry serve` process (or uses --registry-url),
then measures:
  1. GET /schemas/ids/{id} under 50 concurrent clients: paced at an aggregate 2,000 req/s (issue 13's target: p99
     <= 5 ms) and closed loop (as fast as possible), with p50/p99; baseline: the same server's trivial /healthz
     handler under the same load in the same run.
  2. register (new schemas, each a write through Kafka and read back) and lookup (POST /subjects/{s}) under 50
     concurrent clients; baseline: re-registering an existing schema (answered from memory).
  3. serde encode/decode of a 20-field record on one core, against confluent-kafka's AvroSerializer/AvroDeserializer.
The load generator runs in a separate process (aiohttp client) so it does not share the server's core.

    .venv/bin/python bench/registry.py [--seconds 8]
    .venv/bin/python bench/registry.py --smoke --registry-url URL   # seconds: the paced id phase only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer as ConfluentDeserializer
from confluent_kafka.schema_registry.avro import AvroSerializer as ConfluentSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from headwater.ports import free_port
from schemas.registry.process import RegistryProcess
from schemas.serde import AvroDeserializer, AvroSerializer
from streams.broker import EmbeddedBroker

CONCURRENCY = 50
PACED_RATE = 2000.0
SR_JSON = "application/vnd.schemaregistry.v1+json"

RECORD_SCHEMA = {
    "type": "record",
    "name": "BenchContact",
    "namespace": "io.headwater.bench",
    "fields": [
        {"name": "contact_id", "type": "string"},
        {"name": "source_system", "type": "string"},
        {"name": "first_name", "type": ["null", "string"], "default": None},
        {"name": "last_name", "type": "string"},
        {"name": "email", "type": ["null", "string"], "default": None},
        {"name": "phone", "type": ["null", "string"], "default": None},
        {"name": "company", "type": ["null", "string"], "default": None},
        {"name": "job_title", "type": ["null", "string"], "default": None},
        {"name": "street", "type": ["null", "string"], "default": None},
        {"name": "city", "type": ["null", "string"], "default": None},
        {"name": "postal_code", "type": ["null", "string"], "default": None},
        {"name": "country", "type": ["null", "string"], "default": None},
        {"name": "lifecycle_stage", "type": "string"},
        {"name": "score", "type": "int"},
        {"name": "lifetime_value", "type": "double"},
        {"name": "currency", "type": "string"},
        {"name": "opted_in", "type": "boolean"},
        {"name": "notes", "type": ["null", "string"], "default": None},
        {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "updated_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}
RECORD = {
    "contact_id": "0035g00000XyZabAAB",
    "source_system": "salesforce",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "email": "ada@example.com",
    "phone": "+44 20 7946 0958",
    "company": "Analytical Engines Ltd",
    "job_title": "Head of Computing",
    "street": "12 St James's Square",
    "city": "London",
    "postal_code": "SW1Y 4JH",
    "country": "GB",
    "lifecycle_stage": "customer",
    "score": 87,
    "lifetime_value": 12500.5,
    "currency": "GBP",
    "opted_in": True,
    "notes": "Very happy with the last delivery, asked about the enterprise plan.",
    "created_at": 1_714_566_600_000,
    "updated_at": 1_714_653_000_000,
}


# --- load generator (runs in its own process) ----------------------------------------------------------------


def _summary(latencies: list[float], elapsed: float, errors: int) -> dict[str, float]:
    ordered = sorted(latencies)
    count = len(ordered)
    return {
        "requests": count,
        "errors": errors,
        "rate": count / elapsed if elapsed else 0.0,
        "p50_ms": 1000 * ordered[count // 2] if count else float("nan"),
        "p99_ms": 1000 * ordered[min(count - 1, int(count * 0.99))] if count else float("nan"),
    }


async def _load(requests: list[tuple[str, str, bytes | None]], seconds: float, rate: float | None) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    interval = CONCURRENCY / rate if rate else 0.0
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    headers = {"Content-Type": SR_JSON}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(index: int) -> None:
            nonlocal errors
            n = index
            next_at = time.perf_counter() + (index / CONCURRENCY) * interval
            while True:
                if rate:
                    delay = next_at - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    next_at += interval
                if time.perf_counter() >= deadline:
                    return
                method, url, body = requests[n % len(requests)]
                n += CONCURRENCY
                started = time.perf_counter()
                async with session.request(method, url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status >= 300:
                        errors += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
        return _summary(latencies, time.perf_counter() - started, errors)


def _load_process(requests: list[tuple[str, str, bytes | None]], seconds: float, rate: float | None, out: Any) -> None:
    out.put(asyncio.run(_load(requests, seconds, rate)))


def load(requests: list[tuple[str, str, bytes | None]], seconds: float, rate: float | None = None) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_load_process, args=(requests, seconds, rate, queue))
    process.start()
    result: dict[str, float] = queue.get(timeout=seconds + 120)
    process.join(30)
    return result


# --- serde ---------------------------------------------------------------------------------------------------


def per_second(action: Callable[[], Any], count: int) -> float:
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        action()
        best = max(best, count / (time.perf_counter() - started))
    return best


def bench_serde(url: str, count: int) -> dict[str, float]:
    client = SchemaRegistryClient({"url": url})
    topic = "bench.contacts.raw"
    schema_text = json.dumps(RECORD_SCHEMA)
    ours = AvroSerializer(client, f"{topic}-value", schema_text)
    theirs = ConfluentSerializer(client, schema_text)
    context = SerializationContext(topic, MessageField.VALUE)
    data = ours.encode(RECORD)
    assert theirs(RECORD, context) == data, "both serializers must produce identical bytes"
    our_reader, their_reader = AvroDeserializer(client), ConfluentDeserializer(client)
    our_reader.decode(data)
    their_reader(data, context)
    records = [RECORD] * count
    messages = [data] * count
    return {
        "ours_encode": per_second(lambda: [ours.encode(r) for r in records], count),
        "ours_encode_many": per_second(lambda: ours.encode_many(records), count),
        "confluent_encode": per_second(lambda: [theirs(r, context) for r in records], count),
        "ours_decode": per_second(lambda: [our_reader.decode(m) for m in messages], count),
        "ours_decode_many": per_second(lambda: our_reader.decode_many(messages), count),
        "confluent_decode": per_second(lambda: [their_reader(m, context) for m in messages], count),
    }


# --- orchestration -------------------------------------------------------------------------------------------


def schema_for(n: int) -> str:
    return json.dumps({"type": "record", "name": f"Bench{n}", "fields": [{"name": "f", "type": "long"}]})


def line(label: str, result: dict[str, float]) -> str:
    return (
        f"  {label:<44} {result['rate']:>9,.0f} req/s   p50 {result['p50_ms']:6.2f} ms   "
        f"p99 {result['p99_ms']:6.2f} ms   errors {int(result['errors'])}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="Duration of each HTTP load phase.")
    parser.add_argument("--records", type=int, default=100_000, help="Records per serde measurement.")
    parser.add_argument("--registry-url", help="Measure this running registry instead of starting broker + registry.")
    parser.add_argument("--smoke", action="store_true", help="Seconds: a few schemas, only the paced id phase.")
    args = parser.parse_args()

    if args.smoke:
        if not args.registry_url:
            parser.error("--smoke needs --registry-url")
        smoke(args.registry_url)
        return
    if args.registry_url:
        run(args.registry_url, args.seconds, args.records)
        return
    with tempfile.TemporaryDirectory(prefix="hw-bench-registry-") as tmp:
        broker = EmbeddedBroker(Path(tmp) / "broker", port=free_port(), heap="512m")
        status = broker.start()
        assert status.bootstrap is not None
        try:
            registry = RegistryProcess(status.bootstrap, Path(tmp) / "registry.log").start()
            try:
                run(registry.url, args.seconds, args.records)
            finally:
                registry.terminate(30)
        finally:
            broker.stop()


def register_schemas(url: str, prefix: str, count: int) -> list[int]:
    """`count` schemas under a few subjects (subject-level NONE, so the global config of a shared registry stays)."""
    ids = []
    with httpx.Client(base_url=url, headers={"Content-Type": SR_JSON}, timeout=60) as http:
        for subject in [*(f"{prefix}.s{k}" for k in range(10)), f"{prefix}.many"]:
            http.put(f"/config/{subject}", json={"compatibility": "NONE"}).raise_for_status()
        for n in range(count):
            answer = http.post(f"/subjects/{prefix}.s{n % 10}/versions", json={"schema": schema_for(n)})
            ids.append(answer.raise_for_status().json()["id"])
            http.post(f"/subjects/{prefix}.many/versions", json={"schema": schema_for(n)}).raise_for_status()
    return sorted(set(ids))


def paced_ids(url: str, ids: list[int], seconds: float) -> dict[str, float]:
    """GET /schemas/ids/{id} paced at PACED_RATE against /healthz paced the same way; prints both and the ratio."""
    by_id = [("GET", f"{url}/schemas/ids/{i}", None) for i in ids]
    health = [("GET", f"{url}/healthz", None)]
    ids_result = load(by_id, seconds, PACED_RATE)
    health_result = load(health, seconds, PACED_RATE)
    print(line(f"ids, paced at {PACED_RATE:,.0f} req/s", ids_result))
    print(line(f"baseline /healthz, paced at {PACED_RATE:,.0f} req/s", health_result))
    print(f"  ratio ids/healthz p99 (paced): {ids_result['p99_ms'] / health_result['p99_ms']:.2f}")
    target = ids_result["p99_ms"] <= 5 and ids_result["rate"] >= 0.95 * PACED_RATE
    print(f"  target p99 <= 5 ms at {PACED_RATE:,.0f} req/s: {'MET' if target else 'NOT MET'}")
    return ids_result


def machine_load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"  machine load average (1/5/15 min): {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def smoke(url: str) -> None:
    ids = register_schemas(url, f"bench.smoke.{uuid.uuid4().hex[:6]}", 3)
    print(f"registry {url}; {len(ids)} schemas registered; {CONCURRENCY} concurrent clients, 2s per phase")
    print("\nGET /schemas/ids/{id}")
    paced_ids(url, ids, 2.0)
    print(machine_load())


def run(url: str, seconds: float, records: int) -> None:
    prefix = f"bench.{uuid.uuid4().hex[:6]}"
    ids = register_schemas(url, prefix, 100)
    print(f"registry {url}; {len(ids)} schemas registered; {CONCURRENCY} concurrent clients, {seconds:.0f}s each")

    print("\nGET /schemas/ids/{id}")
    paced_ids(url, ids, seconds)
    closed_ids = load([("GET", f"{url}/schemas/ids/{i}", None) for i in ids], seconds)
    closed_health = load([("GET", f"{url}/healthz", None)], seconds)
    print(line("ids, closed loop (max rate)", closed_ids))
    print(line("baseline /healthz, closed loop", closed_health))
    print(f"  ratio ids/healthz rate (closed loop): {closed_ids['rate'] / closed_health['rate']:.2f}")

    print("\nregister / lookup")
    run_id = uuid.uuid4().hex[:6]
    fresh = [
        (
            "POST",
            f"{url}/subjects/bench.new.{run_id}.{n}/versions",
            json.dumps({"schema": schema_for(10_000 + n)}).encode(),
        )
        for n in range(200_000)
    ]
    existing = [
        ("POST", f"{url}/subjects/{prefix}.s{n % 10}/versions", json.dumps({"schema": schema_for(n)}).encode())
        for n in range(100)
    ]
    lookups = [
        ("POST", f"{url}/subjects/{prefix}.s{n % 10}", json.dumps({"schema": schema_for(n)}).encode())
        for n in range(100)
    ]
    registered = load(fresh, seconds)
    again = load(existing, seconds)
    looked_up = load(lookups, seconds)
    print(line("register new schema (write + read back)", registered))
    print(line("register existing schema (baseline)", again))
    print(line("lookup POST /subjects/{s}", looked_up))
    print(f"  ratio new/existing register rate: {registered['rate'] / again['rate']:.3f}")

    print(f"\nserde, 20-field record, one core, {records:,} records per run (best of 3)")
    serde = bench_serde(url, records)
    for name in ("encode", "decode"):
        ours, many, theirs = serde[f"ours_{name}"], serde[f"ours_{name}_many"], serde[f"confluent_{name}"]
        print(
            f"  {name}: headwater {ours:>9,.0f}/s   headwater {name}_many {many:>9,.0f}/s   "
            f"confluent-kafka {theirs:>9,.0f}/s   ratio {ours / theirs:.2f}x ({many / theirs:.2f}x batched)"
        )
    slowest = min(serde["ours_encode"], serde["ours_decode"])
    print(f"  target >= 100,000 records/s each way: {'MET' if slowest >= 100_000 else 'NOT MET'}")
    print(machine_load())


if __name__ == "__main__":
    main()
