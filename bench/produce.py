"""Benchmark `headwater produce` from a file against raw confluent-kafka producing the same rows.

Starts its own broker and registry, writes a JSON Lines file of small records (5 fields, ~90 bytes of JSON), then
  (a) `headwater produce TOPIC FILE`: every row parsed, validated and Avro-encoded against the registry schema,
      with lineage headers; the rate is the command's own summary (first row to last acknowledgement), and the
      whole command's wall time (interpreter start-up included) is printed beside it;
  (b) baseline: the same file's lines produced as raw bytes by a confluent-kafka producer in this process.
Target: (a) >= 50,000 rows/s.

    .venv/bin/python bench/produce.py [--rows 300000] [--smoke] [--bootstrap-servers B --registry-url R]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from services import cluster

from headwater.kafka import clients
from headwater.kafka.config import KafkaSettings

SCHEMA = {
    "type": "record", "name": "BenchPing", "namespace": "io.headwater.bench",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "account", "type": "string"},
        {"name": "amount", "type": "long"},
        {"name": "score", "type": ["null", "double"], "default": None},
        {"name": "active", "type": "boolean"},
    ],
}
HEADWATER = Path(sys.executable).parent / "headwater"


def write_rows(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            out.write(json.dumps({"id": f"ping-{i:08d}", "account": f"acct-{i % 977:04d}", "amount": i * 7,
                                  "score": (i % 100) / 10, "active": i % 3 == 0}))
            out.write("\n")


def raw_rate(kafka: KafkaSettings, topic: str, path: Path) -> float:
    producer = clients.producer(kafka, **{"linger.ms": 20})
    lines = path.read_bytes().splitlines()
    began = time.perf_counter()
    for line in lines:
        while True:
            try:
                producer.produce(topic, line, line[4:16])
                break
            except BufferError:
                producer.poll(0.01)
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - began
    producer.close()
    if remaining:
        raise SystemExit(f"{remaining} raw messages were not delivered")
    return len(lines) / elapsed


def headwater_rate(bootstrap: str, registry_url: str, topic: str, path: Path, schema: Path) -> tuple[float, float]:
    settings = path.parent / "headwater.yaml"
    settings.write_text(f"kafka:\n  bootstrap.servers: {bootstrap}\nregistry:\n  url: {registry_url}\n")
    began = time.perf_counter()
    result = subprocess.run(
        [str(HEADWATER), "produce", topic, str(path), "--schema", str(schema), "--key-field", "id",
         "--config", str(settings)],
        capture_output=True, text=True, check=False, timeout=600,
    )
    wall = time.perf_counter() - began
    if result.returncode != 0:
        raise SystemExit(f"headwater produce failed: {result.stderr.strip()}")
    found = re.search(r"\(([\d,]+) rows/s\)", result.stderr)
    if found is None:
        raise SystemExit(f"no rate in the summary: {result.stderr.strip()}")
    return float(found[1].replace(",", "")), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--smoke", action="store_true", help="a few thousand rows: checks the benchmark runs")
    parser.add_argument("--bootstrap-servers", help="an existing broker (with --registry-url)")
    parser.add_argument("--registry-url")
    args = parser.parse_args()
    rows = 3_000 if args.smoke else args.rows
    run = uuid.uuid4().hex[:8]

    with tempfile.TemporaryDirectory(prefix="hw-bench-produce-") as folder:
        root = Path(folder)
        with cluster(args.bootstrap_servers, args.registry_url, root) as settings:
            data, schema = root / "pings.jsonl", root / "ping.avsc"
            write_rows(data, rows)
            schema.write_text(json.dumps(SCHEMA), encoding="utf-8")
            baseline = raw_rate(settings.kafka, f"bench.pings{run}.bytes", data)
            rate, wall = headwater_rate(settings.kafka.bootstrap_servers, settings.registry.url,
                                        f"bench.pings{run}.raw", data, schema)

    load = os.getloadavg()[0]
    print(f"produce from a file: {rows:,} rows of ~{data_size(rows)} B JSON, {os.cpu_count()} cores, load {load:.2f}")
    print(f"{'path':<34} {'rows/s':>10} {'ratio to raw':>13}")
    print(f"{'(b) raw confluent-kafka bytes':<34} {baseline:>10,.0f} {1.0:>13.2f}")
    print(f"{'(a) headwater produce':<34} {rate:>10,.0f} {rate / baseline:>13.2f}   "
          f"(whole command {rows / wall:,.0f} rows/s incl. start-up; target >= 50,000)")


def data_size(rows: int) -> int:
    sample = json.dumps({"id": "ping-00000000", "account": "acct-0000", "amount": 7 * rows, "score": 9.9,
                         "active": True})
    return len(sample)


if __name__ == "__main__":
    main()
