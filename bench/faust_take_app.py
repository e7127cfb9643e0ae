"""The faust-streaming micro-batch path measured by bench/faust_take.py: `stream.noack_take(n, within)` then an
explicit ack per event, optionally sending each event on. Prints one JSON line with the rate, then exits.
Env: KAFKA_BOOTSTRAP, SOURCE_TOPIC, SINK_TOPIC, RECORDS, SEND (1/0), FAUST_DATADIR. Run: python faust_take_app.py worker
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator

import faust

RECORDS = int(os.environ["RECORDS"])
SEND = os.environ.get("SEND") == "1"
app = faust.App(
    f"bench-faust-{os.environ['SOURCE_TOPIC']}-{int(SEND)}",
    broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP']}",
    datadir=os.environ["FAUST_DATADIR"],
    key_serializer="raw",
    value_serializer="raw",
    web_enabled=False,
    topic_disable_leader=True,
    consumer_auto_offset_reset="earliest",
)
source = app.topic(os.environ["SOURCE_TOPIC"], key_type=bytes, value_type=bytes)
sink = app.topic(os.environ["SINK_TOPIC"], key_type=bytes, value_type=bytes)
state = {"seen": 0, "first": 0.0}


@app.agent(source)
async def take(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
    async for events in stream.noack_take(2000, within=0.05):
        state["first"] = state["first"] or time.monotonic()
        if SEND:
            sent = [await sink.send(key=event.key, value=event.value) for event in events]
            await asyncio.gather(*sent)
        for event in events:
            await stream.ack(event)
        state["seen"] += len(events)
        if state["seen"] >= RECORDS:
            elapsed = time.monotonic() - state["first"]
            print(json.dumps({"records": state["seen"], "rate": state["seen"] / elapsed}), flush=True)
            os._exit(0)
        yield None


if __name__ == "__main__":
    app.main()
