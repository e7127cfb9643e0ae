"""The embedded broker's command line: start, persistence across restarts, stop, status, and every bad input."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from headwater.ports import free_port
from streams.broker.jars import libs_dir
from tests.cli import headwater


@pytest.fixture
def broker_dir(tmp_path: Path) -> Iterator[Path]:
    data_dir = tmp_path / "broker"
    yield data_dir
    # Stop only a broker this test started on its own data dir.
    headwater("broker", "stop", "--data-dir", str(data_dir))


def _consume_all(bootstrap: str, topic: str, expected: int, deadline_s: float = 60) -> list[tuple[bytes, bytes]]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"check-{time.monotonic_ns()}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    seen: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + deadline_s
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            seen.append((message.key(), message.value()))
    finally:
        consumer.close()
    return seen


def test_messages_survive_stop_and_start_on_the_same_data_dir(broker_dir: Path) -> None:
    port = free_port()
    started = headwater("broker", "start", "--port", str(port), "--data-dir", str(broker_dir))
    assert started.returncode == 0, started.stderr
    assert f"127.0.0.1:{port}" in started.stdout

    status = headwater("broker", "status", "--data-dir", str(broker_dir))
    assert "running" in status.stdout and f"127.0.0.1:{port}" in status.stdout

    bootstrap = f"127.0.0.1:{port}"
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    sent = [(f"key-{i % 17}".encode(), f"value-{i}".encode()) for i in range(2_000)]
    for key, value in sent:
        producer.produce("crm.contacts.raw", key=key, value=value)
    assert producer.flush(30) == 0
    del producer

    stopped = headwater("broker", "stop", "--data-dir", str(broker_dir))
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert "not running" in headwater("broker", "status", "--data-dir", str(broker_dir)).stdout

    restarted = headwater("broker", "start", "--data-dir", str(broker_dir))
    assert restarted.returncode == 0, restarted.stderr
    assert f"127.0.0.1:{port}" in restarted.stdout, "a restart keeps the port it had"
    assert _consume_all(bootstrap, "crm.contacts.raw", len(sent)) == sent


def test_stop_when_nothing_runs_says_so_and_succeeds(tmp_path: Path) -> None:
    result = headwater("broker", "stop", "--data-dir", str(tmp_path))
    assert result.returncode == 0
    assert "no broker is running" in result.stdout


def test_port_in_use_is_refused_quickly(broker_dir: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        began = time.monotonic()
        result = headwater("broker", "start", "--port", str(port), "--data-dir", str(broker_dir))
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert time.monotonic() - began < 15


def _fake_java(tmp_path: Path, version_line: str) -> Path:
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(0o755)
    return home


def test_old_java_is_refused(broker_dir: Path, tmp_path: Path) -> None:
    home = _fake_java(tmp_path, 'openjdk version "11.0.21" 2023-10-17')
    result = headwater("broker", "start", "--data-dir", str(broker_dir), env={"JAVA_HOME": str(home)})
    assert result.returncode == 1
    assert "Java 17+ is required" in result.stderr and "is Java 11" in result.stderr


def test_missing_java_is_refused(broker_dir: Path, tmp_path: Path) -> None:
    result = headwater(
        "broker", "start", "--data-dir", str(broker_dir), env={"JAVA_HOME": str(tmp_path / "no-such-jdk")}
    )
    assert result.returncode == 1
    assert "none was found" in result.stderr


def test_missing_jars_without_maven_is_refused(broker_dir: Path, tmp_path: Path) -> None:
    # A PATH holding java but no mvn, and an empty jar folder.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = Path(os.environ.get("JAVA_HOME", "/usr")) / "bin" / "java"
    (bin_dir / "java").symlink_to(java.resolve())
    env = {"PATH": str(bin_dir), "HEADWATER_KAFKA_LIBS": str(tmp_path / "empty-libs"), "JAVA_HOME": ""}
    result = headwater("broker", "start", "--data-dir", str(broker_dir), env=env)
    assert result.returncode == 1
    assert "Maven (mvn) is not installed" in result.stderr


def test_data_dir_of_another_cluster_is_refused(broker_dir: Path) -> None:
    (broker_dir / "kraft").mkdir(parents=True)
    (broker_dir / "kraft" / "meta.properties").write_text("version=1\ncluster.id=OtherClusterAAAAAAAAAA\nnode.id=1\n")
    state = {"pid": 999_999_999, "port": free_port(), "controller_port": free_port(),
             "cluster_id": "MineMineMineMineMineMA", "host": "127.0.0.1"}
    (broker_dir / "headwater-broker.json").write_text(json.dumps(state))
    result = headwater("broker", "start", "--data-dir", str(broker_dir))
    assert result.returncode == 1
    assert "is formatted for cluster OtherClusterAAAAAAAAAA" in result.stderr


def test_broker_dying_during_start_reports_its_log(broker_dir: Path) -> None:
    # A corrupt KRaft quorum-state file passes the storage format step and makes the broker exit while
    # starting: the command must notice at once and point at the log instead of waiting for a timeout.
    port = free_port()
    first = headwater("broker", "start", "--port", str(port), "--data-dir", str(broker_dir))
    assert first.returncode == 0, first.stderr
    assert headwater("broker", "stop", "--data-dir", str(broker_dir)).returncode == 0
    (broker_dir / "kraft" / "__cluster_metadata-0" / "quorum-state").write_text("not json{")

    began = time.monotonic()
    result = headwater("broker", "start", "--data-dir", str(broker_dir))
    assert result.returncode == 1
    assert "exited with code" in result.stderr
    assert "Error while reading the Quorum status" in result.stderr
    assert str(broker_dir / "logs" / "server.log") in result.stderr.replace("\n", "")
    assert time.monotonic() - began < 60
    assert "not running" in headwater("broker", "status", "--data-dir", str(broker_dir)).stdout


def test_install_reports_the_jar_folder() -> None:
    result = headwater("broker", "install")
    assert result.returncode == 0, result.stderr
    assert str(libs_dir()) in result.stdout.replace("\n", "")
    assert sys.executable
