"""Benchmark AI enrichment through the full pipeline (`headwater run`, default runtime, one worker) against fake
services answering in 50 ms per call.

Produces N contacts to a raw topic, then runs the shipped CRM contacts pipeline over them, each time as a new
pipeline (its own consumer group, output topic and result cache):
  (L) baseline: as shipped (local VADER and langid, quality checks): the local-only rate;
  (a) sentiment from `aws_comprehend` instead of VADER, 25 documents a call (concurrency 32): target >= 5,000/s;
  (b) plus an `openai` step (intent and urgency from the notes), one record a call, concurrency 64, cache off:
      target >= 0.8 x the 1,280 records/s that 64 calls of 50 ms allow;
  (c) the (b) pipeline with the cache on, run twice over the same records: the second run makes zero calls,
      target >= 0.9 x (L);
  (d) redaction of email, phone and card numbers in the prompt's text: microseconds per record, against the 100 us
      a record has at 10,000 records/s.
Rates come from the broker's timestamps of the first and last record each run wrote (outputs and dead letters), so
start-up is left out.

    .venv/bin/python bench/enrich.py [--records 20000] [--smoke] [--bootstrap-servers B --registry-url R]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml
from replay import written_rate
from services import cluster, produce_contacts

from headwater.kafka.cluster import ensure_topics, wait_for_broker
from headwater.ports import free_port
from headwater.settings import HeadwaterSettings
from streams.enrich.redaction import Redactor

HERE = Path(__file__).resolve().parent
HEADWATER = Path(sys.executable).parent / "headwater"
SHIPPED = HERE.parent / "streams" / "pipelines" / "crm_contacts.yaml"
PARTITIONS = 2
LATENCY_MS = 50
CHAT_CONCURRENCY = 64
CHAT_CEILING = CHAT_CONCURRENCY * 1000 / LATENCY_MS

INTENT_STEP: dict[str, Any] = {
    "provider": "openai",
    "options": {
        "model": "gpt-4o-mini",
        "api_key": "bench",
        "prompt": "Classify this CRM note. Note: {notes}",
        "outputs": {
            "intent": {"type": "string", "enum": ["question", "purchase", "complaint", "other"]},
            "urgency": {"type": "integer", "minimum": 1, "maximum": 5},
        },
        "concurrency": CHAT_CONCURRENCY,
        "timeout_seconds": 10,
    },
}


class Service:
    """A fake service process on a free port, answering after the benchmark's latency."""

    def __init__(self, command: list[str], health: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port), "--latency-ms", str(LATENCY_MS)],
                stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(HERE.parent)},
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.url + health, timeout=1)
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit(f"{command} did not start; see {log}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(10)


class Bench:
    def __init__(self, settings: HeadwaterSettings, root: Path, raw: str, records: int) -> None:
        self.settings, self.root, self.raw, self.records = settings, root, raw, records
        self.config = root / "headwater.yaml"
        self.config.write_text(yaml.safe_dump({
            "kafka": {"bootstrap.servers": settings.kafka.bootstrap_servers},
            "registry": {"url": settings.registry.url},
            "enrich": {"cache_dir": str(root / "cache")},
        }))

    def pipeline(self, name: str, enrich: list[dict[str, Any]]) -> Path:
        definition = yaml.safe_load(SHIPPED.read_text())
        definition.update({
            "name": name, "input": {"topics": [self.raw]},
            "output": {**definition["output"], "topic": f"bench.{name}.enriched"},
            "dead_letter_topic": f"bench.{name}.dlq", "enrich": enrich,
        })
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(definition))
        return path

    def run(self, pipeline: Path, group: str) -> float:
        """Records/s of one `headwater run` over the raw topic, in a consumer group of its own."""
        name = yaml.safe_load(pipeline.read_text())["name"]
        definition = yaml.safe_load(pipeline.read_text())
        definition["consumer_group"] = group
        pipeline.write_text(yaml.safe_dump(definition))
        with (self.root / f"{group}.log").open("wb") as log:
            worker = subprocess.Popen([str(HEADWATER), "run", str(pipeline), "--config", str(self.config),
                                       "--status-port", "0"], stdout=log, stderr=subprocess.STDOUT)
        try:
            return written_rate(self.settings.kafka, [f"bench.{name}.enriched", f"bench.{name}.dlq"],
                                self.records, 1800)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(120)


def calls(service: Service, path: str) -> int:
    answer = httpx.get(service.url + path, timeout=10).json()
    return int(answer["calls"]) if isinstance(answer, dict) else len(answer)


def redaction_us_per_record(texts: list[str]) -> float:
    redactor = Redactor(["email", "phone", "credit_card"])
    started = time.perf_counter()
    for text in texts:
        redactor.redact(text)
    return (time.perf_counter() - started) / len(texts) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--smoke", action="store_true", help="a few hundred records: checks the benchmark runs")
    parser.add_argument("--bootstrap-servers", help="an existing broker (with --registry-url)")
    parser.add_argument("--registry-url")
    args = parser.parse_args()
    records = 400 if args.smoke else args.records
    run_id = uuid.uuid4().hex[:6]
    raw = f"bench.enrich{run_id}.raw"

    with tempfile.TemporaryDirectory(prefix="hw-bench-enrich-") as folder:
        root = Path(folder)
        comprehend = Service([sys.executable, str(HERE / "fake_comprehend.py")], "/_calls", root / "comprehend.log")
        chat = Service([sys.executable, "-m", "streams.fake_openai"], "/v1/models", root / "openai.log")
        try:
            with cluster(args.bootstrap_servers, args.registry_url, root) as settings:
                ensure_topics(wait_for_broker(settings.kafka, 60), [raw], PARTITIONS)
                produce_contacts(settings, raw, records)
                bench = Bench(settings, root, raw, records)
                shipped = yaml.safe_load(SHIPPED.read_text())["enrich"]
                language = [step for step in shipped if step["provider"] == "language"]
                comprehend_step = {"provider": "aws_comprehend", "options": {
                    "operation": "sentiment", "text_field": "notes", "endpoint_url": comprehend.url,
                    "access_key_id": "bench", "secret_access_key": "bench", "batch_size": 25, "concurrency": 32,
                }}
                chat_step = {**INTENT_STEP, "options": {**INTENT_STEP["options"], "base_url": chat.url + "/v1"}}
                uncached = {**chat_step, "options": {**chat_step["options"], "cache": False}}

                local = bench.run(bench.pipeline(f"local{run_id}", shipped), "local")
                batched = bench.run(bench.pipeline(f"batched{run_id}", [comprehend_step, *language]), "batched")
                chatted = bench.run(bench.pipeline(f"chat{run_id}", [*shipped, uncached]), "chat")
                cached_pipeline = bench.pipeline(f"cached{run_id}", [*shipped, chat_step])
                bench.run(cached_pipeline, "fill")
                before = calls(chat, "/_requests")
                replayed = bench.run(cached_pipeline, "replay")
                replay_calls = calls(chat, "/_requests") - before
        finally:
            comprehend.stop()
            chat.stop()
        texts = [f"Call me at +1 415 555 {n % 10000:04d} or mail jo.{n}@example.com; card 4111 1111 1111 1111. "
                 f"Order SO-{n} shipped on 2024-03-{n % 28 + 1:02d}, total 1,299.00 EUR." for n in range(5000)]
        redact_us = redaction_us_per_record(texts)

    print(f"enrichment through the pipeline: {records:,} contacts, {PARTITIONS} partitions, fakes answering in "
          f"{LATENCY_MS} ms a call, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    print(f"{'path':<52} {'records/s':>10} {'ratio':>7}")
    print(f"{'(L) local-only (as shipped)':<52} {local:>10,.0f} {1.0:>7.2f}   (baseline)")
    print(f"{'(a) aws_comprehend, 25 a call':<52} {batched:>10,.0f} {batched / 5000:>7.2f}   "
          "(of the 5,000/s target)")
    print(f"{'(b) openai, 1 a call, concurrency 64, cache off':<52} {chatted:>10,.0f} "
          f"{chatted / CHAT_CEILING:>7.2f}   (of the {CHAT_CEILING:,.0f}/s ceiling; target >= 0.80)")
    print(f"{'(c) (b) replayed with the cache on':<52} {replayed:>10,.0f} {replayed / local:>7.2f}   "
          f"(of (L); target >= 0.90; provider calls: {replay_calls})")
    print(f"{'(d) redaction (email, phone, card)':<52} {redact_us:>8.1f}us {redact_us / 100:>7.2f}   "
          "(of the 100 us a record has at 10,000/s)")


if __name__ == "__main__":
    main()
