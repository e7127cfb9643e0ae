"""What Faust's per-event consumer path costs: faust-streaming's micro-batch path (`noack_take` + ack, the one the
Faust runtime's agents use) against a raw confluent-kafka consumer, same broker, same 1 KB records. Faust still
awaits one callback per message before the batch forms, which is why `headwater run --runtime direct` exists.

Usage: python bench/faust_take.py [--records 100000] [--smoke] [--bootstrap-servers B]
  --smoke  2,000 records: checks the benchmark runs (tests/test_bench_faust_take.py)
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

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from services import broker_at

HERE = Path(__file__).resolve().parent


def consume_rate(bootstrap: str, topic: str, count: int) -> float:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{time.time()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen, first = 0, 0.0
    while seen < count:
        messages = consumer.consume(2000, 0.5)
        if messages and not first:
            first = time.monotonic()
        seen += sum(1 for message in messages if message.error() is None)
    elapsed = time.monotonic() - first
    consumer.close()
    return count / elapsed


def faust_rate(bootstrap: str, topic: str, count: int, send: bool, datadir: Path) -> float:
    env = {**os.environ, "KAFKA_BOOTSTRAP": bootstrap, "SOURCE_TOPIC": topic, "SINK_TOPIC": f"{topic}.out",
           "RECORDS": str(count), "SEND": "1" if send else "0", "FAUST_DATADIR": str(datadir)}
    result = subprocess.run([sys.executable, str(HERE / "faust_take_app.py"), "worker", "-l", "warn"],
                            env=env, capture_output=True, text=True, timeout=900, check=False)
    # Faust redirects stdout into its logger, so the JSON line may arrive on either stream, behind a log prefix.
    found = re.findall(r'\{"records".*\}', result.stdout + result.stderr)
    if not found:
        raise RuntimeError(f"faust app failed: {result.stderr[-2000:]}")
    rate: float = json.loads(found[-1])["rate"]
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--smoke", action="store_true", help="2,000 records: checks the benchmark runs")
    parser.add_argument("--bootstrap-servers", help="an existing broker instead of an embedded one")
    args = parser.parse_args()
    records = 2_000 if args.smoke else args.records
    with tempfile.TemporaryDirectory(prefix="hw-faust-") as tmp, \
            broker_at(args.bootstrap_servers, Path(tmp)) as bootstrap:
        topic = f"bench.faust{uuid.uuid4().hex[:6]}.raw"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for name in (topic, f"{topic}.out"):
            admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])[name].result(30)
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10, "batch.size": 1_000_000,
                             "queue.buffering.max.messages": 1_000_000})
        payload = os.urandom(512).hex().encode()
        for index in range(records):
            while True:
                try:
                    producer.produce(topic, payload, str(index).encode())
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(60)
        raw = consume_rate(bootstrap, topic, records)
        take = faust_rate(bootstrap, topic, records, False, Path(tmp) / "faust1")
        relay = faust_rate(bootstrap, topic, records, True, Path(tmp) / "faust2")
        print(f"confluent-kafka consume:               {raw:,.0f} records/s")
        print(f"faust noack_take + ack (consume only): {take:,.0f} records/s ({take / raw:.3f} of raw)")
        print(f"faust noack_take + send + ack:         {relay:,.0f} records/s ({relay / raw:.3f} of raw)")


if __name__ == "__main__":
    main()
