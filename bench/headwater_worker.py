"""One Headwater pipeline worker process for bench/pipeline.py: runs until SIGTERM, then prints its stats as JSON.

Several of these with the same pipeline file share the input partitions (one consumer group), which is how
Headwater uses more than one core.
Usage: headwater_worker.py PIPELINE_YAML BOOTSTRAP REGISTRY ENRICH QUALITY READY_FILE RUNTIME(faust|direct)
With HEADWATER_BENCH_PROFILE=DIR the whole run is profiled (cProfile) into DIR/worker-PID.prof.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import signal
import sys
from pathlib import Path
from typing import cast

from headwater.settings import load_settings
from streams.runtime.batches import WorkerOptions
from streams.runtime.config import load_pipeline
from streams.runtime.engine import StageSwitches
from streams.runtime.runner import RuntimeName, build_runtime


async def main() -> None:
    pipeline, bootstrap, registry, enrich, quality, ready_file, runtime_name = sys.argv[1:8]
    config = load_pipeline(Path(pipeline))
    settings = load_settings(kafka={"bootstrap.servers": bootstrap}, registry={"url": registry})
    options = WorkerOptions(switches=StageSwitches(enrich=enrich == "1", quality=quality == "1"))
    stop = asyncio.Event()
    runtime = build_runtime(cast(RuntimeName, runtime_name), [config], settings, options)
    worker = runtime.pipelines[0]

    async def announce_ready() -> None:
        while True:
            if worker.ready:
                await asyncio.to_thread(Path(ready_file).touch)
                return
            await asyncio.sleep(0.05)

    announcer = asyncio.create_task(announce_ready())
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    [stats] = await runtime.run(stop)
    announcer.cancel()
    print(json.dumps({"records_in": stats.records_in, "first": stats.first_batch_at, "last": stats.last_batch_at,
                      "latency_ms": stats.latency_ms.to_json(), "stage_seconds": dict(stats.stage_seconds)}))


if __name__ == "__main__":
    profile_dir = os.environ.get("HEADWATER_BENCH_PROFILE")
    if profile_dir:
        cProfile.run("asyncio.run(main())", str(Path(profile_dir) / f"worker-{os.getpid()}.prof"))
    else:
        asyncio.run(main())
