"""A minimal faust-streaming app for the foundation tests: one agent copies SOURCE_TOPIC to SINK_TOPIC, keyed.

Run as a real worker process: `python -m tests.apps.faust_relay worker --web-port N`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import faust

app = faust.App(
    "headwater-test-relay",
    broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP']}",
    datadir=os.environ.get("FAUST_DATADIR", "/tmp/headwater-faust-relay"),
    key_serializer="raw",
    value_serializer="raw",
    topic_allow_declare=False,
    web_enabled=True,
)
source = app.topic(os.environ["SOURCE_TOPIC"], key_type=bytes, value_type=bytes)
sink = app.topic(os.environ["SINK_TOPIC"], key_type=bytes, value_type=bytes)


@app.agent(source)
async def relay(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
    async for event in stream.events():
        await sink.send(key=event.key, value=event.value)
        yield None


if __name__ == "__main__":
    app.main()
