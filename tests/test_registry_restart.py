"""The `_schemas` topic is the only source of truth: SIGKILL + restart answers identically; several processes
share one topic with one primary; the process starts without Kafka and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
from confluent_kafka.schema_registry import Schema, SchemaReference

from headwater.ports import free_port
from tests.connect_support import wait_for
from tests.fixtures.registry import RegistryProcess, RegistryService


def schema(name: str, *fields: str) -> Schema:
    body = {"type": "record", "name": name, "fields": [{"name": f, "type": "string", "default": ""} for f in fields]}
    return Schema(json.dumps(body), "AVRO")


def snapshot(url: str) -> dict[str, Any]:
    """Every answer a client could get: subjects, versions (live and deleted), ids, configs, modes."""
    get = lambda path: httpx.get(url + path).json()  # noqa: E731
    seen: dict[str, Any] = {"subjects": get("/subjects?deleted=true"), "config": get("/config"), "mode": get("/mode")}
    ids = set()
    for subject in seen["subjects"]:
        versions = get(f"/subjects/{subject}/versions?deleted=true")
        seen[f"{subject}/versions"] = versions
        seen[f"{subject}/live"] = httpx.get(f"{url}/subjects/{subject}/versions").json()
        seen[f"{subject}/config"] = get(f"/config/{subject}")
        seen[f"{subject}/mode"] = get(f"/mode/{subject}")
        for version in versions:
            body = get(f"/subjects/{subject}/versions/{version}?deleted=true")
            seen[f"{subject}/{version}"] = body
            ids.add(body["id"])
    for schema_id in sorted(ids):
        seen[f"id/{schema_id}"] = get(f"/schemas/ids/{schema_id}")
        seen[f"id/{schema_id}/versions"] = get(f"/schemas/ids/{schema_id}/versions?deleted=true")
    return seen


def test_sigkill_and_restart_answers_everything_identically(registry: RegistryService) -> None:
    first = registry.spawn()
    client = first.client()
    for n in range(3):
        subject = f"crm.k{n}.raw-value"
        client.register_schema(subject, schema(f"R{n}", "a"))
        client.register_schema(subject, schema(f"R{n}", "a", "b"))
    client.register_schema("crm.shared.raw-value", schema("R0", "a"))
    client.register_schema("addr", schema("Addr", "city"))
    referencing = Schema(
        json.dumps({"type": "record", "name": "Holder", "fields": [{"name": "a", "type": "Addr"}]}),
        "AVRO",
        [SchemaReference("Addr", "addr", 1)],
    )
    client.register_schema("holder", referencing)
    client.set_compatibility("crm.k1.raw-value", "FULL")
    client.set_compatibility(level="FORWARD")
    client.update_mode("crm.k2.raw-value", "READONLY")
    client.delete_version("crm.k0.raw-value", 1)
    client.delete_subject("crm.shared.raw-value")
    before = snapshot(first.url)
    assert before["crm.k0.raw-value/live"] == [2] and before["config"] == {"compatibilityLevel": "FORWARD"}

    first.kill()
    second = RegistryProcess(registry.kafka.bootstrap, first.topic, registry.log_dir).start()
    try:
        assert snapshot(second.url) == before
        next_id = second.client().register_schema("fresh", schema("Fresh", "z"))
        highest = max(int(key.split("/")[1]) for key in before if key.startswith("id/") and key.count("/") == 1)
        assert next_id == highest + 1, "ids continue after the highest one ever allocated"
    finally:
        assert second.terminate() == 0


def roles(*processes: RegistryProcess) -> list[bool]:
    return [httpx.get(f"{p.url}/readyz").json().get("primary", False) for p in processes]


def test_second_process_forwards_writes_to_the_primary_and_takes_over(registry: RegistryService) -> None:
    one = registry.spawn()
    two = registry.spawn(one.topic)
    try:
        wait_for(lambda: sorted(roles(one, two)) == [False, True], timeout=45, what="exactly one primary")
        primary, secondary = (one, two) if roles(one, two)[0] else (two, one)
        schema_id = secondary.client().register_schema("via-secondary", schema("Fw", "a"))
        assert primary.client().get_version("via-secondary", 1).schema_id == schema_id
        assert secondary.client().get_version("via-secondary", 1).schema_id == schema_id, "read your write"

        primary.kill()
        wait_for(lambda: roles(secondary) == [True], timeout=45, what="the secondary to become primary")
        assert secondary.client().register_schema("after-failover", schema("Af", "a")) == schema_id + 1
    finally:
        one.terminate()
        two.terminate()


def test_starts_without_kafka_retries_and_stops_cleanly_on_sigterm(registry: RegistryService) -> None:
    dead = RegistryProcess(f"127.0.0.1:{free_port()}", f"_schemas_{uuid.uuid4().hex[:8]}", registry.log_dir)
    dead.start(wait=False)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{dead.url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.1)
        loading = httpx.get(f"{dead.url}/subjects")
        assert loading.status_code == 503 and loading.json()["error_code"] == 50002
        while "event=kafka_unavailable" not in dead.logs():
            assert time.monotonic() < deadline, dead.logs()
            time.sleep(0.1)
    finally:
        assert dead.terminate() == 0
    assert "event=registry_stopped" in dead.logs()
