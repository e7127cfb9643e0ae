"""Scenario (c) of bench/pipeline.py: Headwater's own stage functions inside a Quix Streams application.

Runs in bench/.venv-quix (quixstreams pins confluent-kafka < 2.13), with the repository and the project venv's
packages appended to sys.path by a .pth file, so Quix gets its pinned client and the stages are the same code.
Quix processes one message at a time, so every stage is called with a one-record batch; CPU-bound model code is
called directly (no executor hop) to give Quix the cheapest path. Prints one JSON line with the measured rate.
Usage: quix_app.py BOOTSTRAP REGISTRY_URL PIPELINE_YAML INPUT_TOPIC OUTPUT_TOPIC RECORDS MAX_SECONDS ENRICH QUALITY
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from quixstreams import Application, message_context

from headwater.settings import RegistrySettings
from schemas.client import registry_client
from streams.runtime.config import load_pipeline
from streams.runtime.engine import PipelineEngine, StageSwitches
from streams.runtime.records import InMessage


def main() -> None:
    bootstrap, registry_url, pipeline, source, sink = sys.argv[1:6]
    records, max_seconds = int(sys.argv[6]), float(sys.argv[7])
    switches = StageSwitches(enrich=sys.argv[8] == "1", quality=sys.argv[9] == "1")
    config = load_pipeline(Path(pipeline))
    engine = PipelineEngine(config, registry_client(RegistrySettings(url=registry_url)), switches)
    # Quix runs one record at a time in its own process: the local models are loaded here and called in-line.
    scorers: list[Any] = [(provider, provider.model_factory()()) for provider in engine.enrich.providers]

    def process(value: bytes, key: bytes, timestamp: int, headers: Any) -> bytes | None:
        context = message_context()
        message = InMessage(context.topic, context.partition, context.offset, key, value, list(headers or []),
                            timestamp)
        items, dead = engine.decode_and_transform([message])
        for provider, model in scorers:
            if items:
                batch = [items[0].record]
                (outcome,) = provider.outcomes(batch, model(provider.payload(batch)))
                items[0].record.update(outcome.fields)
        if items and engine.quality is not None:
            items, failed = engine.judge(items)
            dead.extend(failed)
        outputs, rejected = engine.encode(items)
        produced = outputs + dead + rejected
        return produced[0].value if produced else None

    app = Application(broker_address=bootstrap, consumer_group=f"bench-quix-{uuid.uuid4().hex[:8]}",
                      auto_offset_reset="earliest", loglevel="WARNING")
    input_topic = app.topic(source, value_deserializer="bytes", key_deserializer="bytes")
    output_topic = app.topic(sink, value_serializer="bytes", key_serializer="bytes")
    state = {"count": 0, "first": 0.0, "last": 0.0}

    def count(value: Any) -> Any:
        now = time.monotonic()
        state["first"] = state["first"] or now
        state["count"] += 1
        state["last"] = now
        if state["count"] >= records or now - state["first"] > max_seconds:
            app.stop()
        return value

    sdf = app.dataframe(input_topic)
    sdf = sdf.apply(process, metadata=True).apply(count)
    sdf.to_topic(output_topic)
    app.run()
    elapsed = max(state["last"] - state["first"], 1e-9)
    print(json.dumps({"records": state["count"], "seconds": elapsed, "rate": state["count"] / elapsed}))


if __name__ == "__main__":
    main()
