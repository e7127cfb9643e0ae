"""`headwater replay` against the real broker and registry: dry-run plans, an exact range written once to a side
topic in its own group, idempotent re-runs, SIGKILL then `--resume` with no gap and no duplicate, `diff` against the
live output and an idempotent `promote`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from headwater import envelope
from tests.cli import headwater as run_cli
from tests.connect_support import wait_for
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService
from tests.replay_support import (
    HEADWATER,
    REPO,
    committed_records,
    contacts_pipeline,
    end_offsets,
    group_offsets,
    live_pipeline,
)


def test_replay_range_to_a_side_topic_once_then_diff_and_promote(
    tmp_path: Path, kafka: KafkaService, registry: RegistryService
) -> None:
    raw, pipeline, config = contacts_pipeline(tmp_path, kafka, registry, 400)
    domain, entity = raw.split(".")[:2]
    enriched = f"{domain}.{entity}.enriched"
    live_group = yaml.safe_load(pipeline.read_text())["consumer_group"]
    run_id = f"t{uuid.uuid4().hex[:8]}"
    side = f"{domain}.{entity}.backfill.{run_id}"
    with live_pipeline(pipeline, config, enriched, kafka.bootstrap, 400, tmp_path / "live.log"):
        wait_for(lambda: group_offsets(kafka.bootstrap, live_group, raw, 2) == {
            p: end for p, end in enumerate(end_offsets(kafka.bootstrap, raw, 2))
        }, 60, "the live pipeline to commit every input")
        live_offsets = group_offsets(kafka.bootstrap, live_group, raw, 2)

        dry = run_cli("replay", str(pipeline), "--offsets", "0:10-60,1:0-50", "--run-id", run_id, "--dry-run",
                      "--config", config)
        assert dry.returncode == 0, dry.stderr
        assert "100 records; estimated" in dry.stdout and "estimated AI cost $0.0000" in dry.stdout
        assert committed_records(kafka.bootstrap, side) == []

        replayed = run_cli("replay", str(pipeline), "--offsets", "0:10-60,1:0-50", "--run-id", run_id,
                           "--config", config)
        assert replayed.returncode == 0, replayed.stderr
        assert "in 100, out 100, dead-lettered 0" in replayed.stdout
        assert group_offsets(kafka.bootstrap, live_group, raw, 2) == live_offsets, "the replay moved the live group"
    records = committed_records(kafka.bootstrap, side)
    sources = Counter(record["headers"][envelope.SOURCE] for record in records)
    expected = {f"{raw}/0/{o}" for o in range(10, 60)} | {f"{raw}/1/{o}" for o in range(50)}
    assert set(sources) == expected and set(sources.values()) == {1}
    assert {record["headers"]["hw-replay-run"] for record in records} == {run_id}
    assert group_offsets(kafka.bootstrap, live_group, raw, 2) == live_offsets

    again = run_cli("replay", str(pipeline), "--offsets", "0:10-60,1:0-50", "--run-id", run_id, "--config", config)
    assert again.returncode == 0, again.stderr
    assert len(committed_records(kafka.bootstrap, side)) == 100

    same = run_cli("replay", "diff", run_id, "--config", config)
    assert same.returncode == 0, same.stderr
    assert "identical 100, changed 0, new 0, dead-lettered 0" in same.stdout

    definition = yaml.safe_load(pipeline.read_text())
    definition["version"] = "4"
    definition["transform"].append({"op": "case", "fields": ["first_name"], "to": "upper"})
    pipeline.write_text(yaml.safe_dump(definition, sort_keys=False))
    changed_run = f"t{uuid.uuid4().hex[:8]}"
    second = run_cli("replay", str(pipeline), "--offsets", "0:0-30", "--run-id", changed_run, "--config", config)
    assert second.returncode == 0, second.stderr
    changed = run_cli("replay", "diff", changed_run, "--config", config)
    assert "identical 0, changed 30, new 0" in changed.stdout, changed.stdout
    assert "first_name" in changed.stdout and "'ZOË'" in changed.stdout

    promoted = run_cli("replay", "promote", changed_run, "--config", config)
    assert promoted.returncode == 0, promoted.stderr
    assert "promoted 30 records" in promoted.stdout
    twice = run_cli("replay", "promote", changed_run, "--config", config)
    assert "promoted 0 records" in twice.stdout
    live = committed_records(kafka.bootstrap, enriched)
    assert sum(1 for record in live if record["headers"].get("hw-replay-run") == changed_run) == 30


def test_replay_killed_mid_run_resumes_with_no_gap_and_no_duplicate(
    tmp_path: Path, kafka: KafkaService, registry: RegistryService
) -> None:
    raw, pipeline, config = contacts_pipeline(tmp_path, kafka, registry, 12000, batch=25)
    domain, entity = raw.split(".")[:2]
    run_id = f"k{uuid.uuid4().hex[:8]}"
    side = f"{domain}.{entity}.backfill.{run_id}"
    log = tmp_path / "replay.log"
    with log.open("ab") as output:
        replay = subprocess.Popen([HEADWATER, "replay", str(pipeline), "--offsets", "0:0-6000,1:0-6000",
                                   "--run-id", run_id, "--config", config],
                                  stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 120
        while len(committed_records(kafka.bootstrap, side)) < 200:
            assert replay.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the replay wrote nothing"
        replay.send_signal(signal.SIGKILL)
        replay.wait(10)
    finally:
        if replay.poll() is None:
            replay.kill()
            replay.wait(10)
    partial = len(committed_records(kafka.bootstrap, side))
    assert partial < 12000, "the replay finished before it could be killed"

    resumed = run_cli("replay", "--resume", run_id, "--config", config, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "continuing replay" in resumed.stderr
    assert "in 12,000" in resumed.stdout
    sources = Counter(record["headers"][envelope.SOURCE] for record in committed_records(kafka.bootstrap, side))
    assert set(sources) == {f"{raw}/{p}/{o}" for p in (0, 1) for o in range(6000)}
    assert set(sources.values()) == {1}


def test_replay_by_time_and_the_empty_and_missing_cases(
    tmp_path: Path, kafka: KafkaService, registry: RegistryService
) -> None:
    _, pipeline, config = contacts_pipeline(tmp_path, kafka, registry, 50)
    now = datetime.now(UTC)
    window = ["--from", (now - timedelta(hours=1)).isoformat(), "--to", (now + timedelta(minutes=5)).isoformat()]
    dry = run_cli("replay", str(pipeline), *window, "--dry-run", "--config", config)
    assert dry.returncode == 0, dry.stderr
    assert "50 records; estimated" in dry.stdout

    future = ["--from", (now + timedelta(days=1)).isoformat(), "--to", (now + timedelta(days=2)).isoformat()]
    empty = run_cli("replay", str(pipeline), *future, "--config", config)
    assert empty.returncode == 0
    assert "nothing to replay" in empty.stdout

    definition = yaml.safe_load(pipeline.read_text())
    definition["input"]["topics"] = [f"crm.gone{uuid.uuid4().hex[:6]}.raw"]
    missing_file = tmp_path / "missing.yaml"
    missing_file.write_text(yaml.safe_dump(definition))
    missing = run_cli("replay", str(missing_file), "--offsets", "0:0-10", "--config", config)
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    assert json.dumps(definition["input"]["topics"][0])[1:-1] in missing.stderr
