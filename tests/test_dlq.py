"""The dead-letter repair loop against the real broker and registry: `dlq summary` and `dlq show` say what failed
and why, `dlq replay` re-runs the originals through the fixed pipeline with `hw-replay-of`, what fails again is
dead-lettered with its new reason, and replaying twice leaves one warehouse row per key."""

from __future__ import annotations

import subprocess
from pathlib import Path

import duckdb
import yaml

from connectors.sinks.duckdb import load_until_caught_up
from headwater.settings import KafkaSettings, RegistrySettings
from tests.cli import headwater
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService
from tests.replay_support import committed_records, contacts_pipeline, run_live

REFUSED = frozenset({3, 17, 31, 44, 58})


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The command with a terminal wide enough for its tables."""
    return headwater(*args, env={"COLUMNS": "250"})


def test_dead_letters_are_summarised_shown_and_replayed_after_a_fix(
    tmp_path: Path, kafka: KafkaService, registry: RegistryService
) -> None:
    raw, pipeline, config = contacts_pipeline(tmp_path, kafka, registry, 60, refused=REFUSED)
    domain, entity = raw.split(".")[:2]
    enriched, dlq = f"{domain}.{entity}.enriched", f"{domain}.{entity}.dlq"
    run_live(pipeline, config, enriched, kafka.bootstrap, 55, tmp_path / "live.log")
    assert len(committed_records(kafka.bootstrap, dlq)) == 5

    summary = run_cli("dlq", "summary", dlq, "--config", config)
    assert summary.returncode == 0, summary.stderr
    assert f"{dlq}: 5 dead letters, 0 resolved" in summary.stdout
    assert "transform" in summary.stdout and "RuntimeError" in summary.stdout
    assert sum(f"C{n:06d}" in summary.stdout for n in REFUSED) == 3

    shown = run_cli("dlq", "show", dlq, "--stage", "transform", "--config", config)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("hook refused the record") == 5
    assert '"first_name": "EXPLODE"' in shown.stdout
    assert run_cli("dlq", "show", dlq, "--stage", "decode", "--config", config).stdout.startswith("no dead letters")

    dry = run_cli("dlq", "replay", str(pipeline), "--stage", "transform", "--dry-run", "--config", config)
    assert "5 of 5 dead letters" in dry.stdout

    still_broken = run_cli("dlq", "replay", str(pipeline), "--stage", "transform", "--config", config)
    assert still_broken.returncode == 0, still_broken.stderr
    assert "in 5, out 0, dead-lettered 5" in still_broken.stdout
    again_dead = [r for r in committed_records(kafka.bootstrap, dlq) if "hw-replay-of" in r["headers"]]
    assert len(again_dead) == 5
    first_dead_letters = {r["headers"]["hw-source"] for r in committed_records(kafka.bootstrap, dlq)
                          if "hw-replay-of" not in r["headers"]}
    assert len(first_dead_letters) == 5
    assert {r["headers"]["hw-source"] for r in again_dead} == first_dead_letters

    definition = yaml.safe_load(pipeline.read_text())
    definition["transform"] = [step for step in definition["transform"] if step["op"] != "hook"]
    pipeline.write_text(yaml.safe_dump(definition, sort_keys=False))
    for _ in range(2):
        fixed = run_cli("dlq", "replay", str(pipeline), "--stage", "transform", "--until", "2999-01-01T00:00:00Z",
                        "--config", config)
        assert fixed.returncode == 0, fixed.stderr
    replayed = [r for r in committed_records(kafka.bootstrap, enriched) if "hw-replay-of" in r["headers"]]
    assert {r["headers"]["hw-source"] for r in replayed} == first_dead_letters
    assert all(r["headers"]["hw-replay-of"].startswith(f"{dlq}/") for r in replayed)

    resolved = run_cli("dlq", "summary", dlq, "--config", config)
    assert "resolved by a DLQ replay" in resolved.stdout and ": 10 dead letters, 10 resolved" in resolved.stdout

    database = tmp_path / "warehouse.duckdb"
    load_until_caught_up(database, [enriched], group_id="dlq-test",
                         kafka=KafkaSettings.model_validate({"bootstrap.servers": kafka.bootstrap}),
                         registry=RegistrySettings(url=registry.url))
    with duckdb.connect(str(database)) as conn:
        rows = conn.execute(f"SELECT _key, count(*) FROM {enriched.replace('.', '_')} GROUP BY _key").fetchall()
    assert len(rows) == 60 and {count for _, count in rows} == {1}
