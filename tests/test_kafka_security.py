"""Every Kafka client path against a broker whose only client listener is SASL_SSL (SCRAM-SHA-512), set up with
librdkafka's property names: confluent-kafka and aiokafka clients from the Kafka layer, the registry, pipelines on
both runtimes, a connector and the CLI. A wrong password ends in one line; the password is in no log of the run.

The module starts its own broker (test certificates from trustme, a random password); settings reach the
subprocesses as a `--config` YAML without the password, which comes from HEADWATER_KAFKA__SASL_PASSWORD.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from headwater import envelope
from headwater.kafka import clients
from headwater.kafka.config import KafkaSettings
from headwater.kafka.python_clients import faust_broker_options
from headwater.ports import free_port
from streams.broker.security import SECURITY_FILE
from tests.cli import headwater as plain_headwater
from tests.connect_support import wait_for
from tests.fixtures.sasl import SecureKafka, secure_kafka, write_certificates
from tests.pipeline_support import contact, encoder, pipeline_file

WRONG_PASSWORD_DEADLINE_S = 60.0
PAGE_VIEW = {
    "type": "record", "name": "PageView", "namespace": "test.security",
    "fields": [{"name": "view_id", "type": "string"}, {"name": "url", "type": "string"}],
}


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    with secure_kafka(tmp_path_factory.mktemp("sasl")) as service:
        yield service


def spawn(
    secure: SecureKafka, name: str, *args: str, password: str | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    """`headwater ARGS` in the background, stdout and stderr to a log of the module, the password from the env."""
    log = secure.log_file(name)
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", *args],
            stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **secure.env(password)},
        )
    return process, log


def headwater(secure: SecureKafka, name: str, *args: str, password: str | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`headwater ARGS` to completion; its output is also kept as a log of the module."""
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True, check=False,
        timeout=timeout, env={**os.environ, **secure.env(password)}, stdin=subprocess.DEVNULL,
    )
    secure.log_file(name).write_text(result.stdout + result.stderr, encoding="utf-8")
    return result


def stop(process: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM and wait; the process must end cleanly."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    assert process.returncode == 0, log.read_text(errors="replace")[-3000:]


def create_topic(secure: SecureKafka, name: str, partitions: int = 1) -> str:
    admin = clients.admin(secure.settings())
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(timeout=30)
    return name


Read = tuple[bytes, dict[str, str]]


def read_all(secure: SecureKafka, topic: str, expected: int, timeout: float = 60.0) -> list[Read]:
    """(key, headers) of the topic's records, read from the start over SASL_SSL until `expected` arrived."""
    consumer = clients.consumer(secure.settings(), f"read-{uuid.uuid4().hex}")
    consumer.subscribe([topic])
    found: list[Read] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < expected:
            assert time.monotonic() < deadline, f"only {len(found)} of {expected} records on {topic}"
            for message in consumer.consume(500, timeout=0.5):
                if message.error() is None:
                    headers = {name: (value or b"").decode() for name, value in message.headers() or []}
                    found.append((message.key() or b"", headers))
    finally:
        consumer.close()
    return found


@dataclass
class Registry:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self) -> SchemaRegistryClient:
        return SchemaRegistryClient({"url": self.url})


@pytest.fixture(scope="module")
def secure_registry(secure: SecureKafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """`headwater registry serve` storing its schemas in the SASL_SSL broker (aiokafka clients underneath)."""
    config = secure.settings_file(tmp_path_factory.mktemp("registry") / "headwater.yaml")
    port = free_port()
    process, log = spawn(secure, "registry", "registry", "serve", "--port", str(port),
                         "--topic", f"_schemas_{uuid.uuid4().hex[:8]}", "--config", str(config))
    registry = Registry(f"http://127.0.0.1:{port}", process, log)

    def ready() -> bool:
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            return httpx.get(f"{registry.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, 90, "the registry on the SASL_SSL broker to be ready")
        yield registry
    finally:
        stop(process, log)


def test_broker_refuses_plaintext_and_serves_only_sasl_ssl(secure: SecureKafka) -> None:
    properties = (secure.broker.data_dir / "server.properties").read_text()
    assert f"listeners=SASL_SSL://{secure.bootstrap}," in properties
    assert "CONTROLLER://127.0.0.1:" in properties and "PLAINTEXT://" not in properties
    assert secure.broker.status().protocol == "SASL_SSL"
    plain = clients.admin(KafkaSettings.model_validate({"bootstrap.servers": secure.bootstrap}),
                          log_level=0)
    with pytest.raises(KafkaException):
        plain.list_topics(timeout=3)


async def test_confluent_and_aiokafka_clients_produce_and_consume(secure: SecureKafka) -> None:
    settings = secure.settings()
    topic = create_topic(secure, f"test.security{uuid.uuid4().hex[:8]}.raw", partitions=2)

    producer = clients.producer(settings)
    for index in range(10):
        producer.produce(topic, key=f"k{index}".encode(), value=f"confluent-{index}".encode())
    assert producer.flush(30) == 0
    # A commit makes the broker write transaction markers to itself: the inter-broker side of the listener.
    transactional = clients.transactional_producer(settings, f"security-{uuid.uuid4().hex[:8]}")
    transactional.init_transactions(60)
    transactional.begin_transaction()
    transactional.produce(topic, key=b"t0", value=b"transactional-0")
    transactional.commit_transaction(60)

    aio_producer = clients.aiokafka_producer(settings)
    await aio_producer.start()
    try:
        for index in range(10):
            await aio_producer.send_and_wait(topic, key=f"a{index}".encode(), value=f"aiokafka-{index}".encode())
    finally:
        await aio_producer.stop()

    aio_consumer = clients.aiokafka_consumer(
        settings, topic, group_id=f"aio-{uuid.uuid4().hex}", auto_offset_reset="earliest"
    )
    await aio_consumer.start()
    seen_by_aiokafka: set[bytes] = set()
    try:
        deadline = time.monotonic() + 60
        while len(seen_by_aiokafka) < 21 and time.monotonic() < deadline:
            batches = await aio_consumer.getmany(timeout_ms=500)
            seen_by_aiokafka |= {record.value for records in batches.values() for record in records if record.value}
    finally:
        await aio_consumer.stop()

    seen_by_confluent = {key for key, _ in read_all(secure, topic, 21)}
    expected_values = {f"confluent-{i}".encode() for i in range(10)} | {f"aiokafka-{i}".encode() for i in range(10)}
    assert seen_by_aiokafka == expected_values | {b"transactional-0"}
    expected_keys = {f"k{i}".encode() for i in range(10)} | {f"a{i}".encode() for i in range(10)} | {b"t0"}
    assert seen_by_confluent == expected_keys


async def test_python_clients_take_the_ca_inline_as_ssl_ca_pem(secure: SecureKafka) -> None:
    """librdkafka's `ssl.ca.pem` instead of `ssl.ca.location`: aiokafka (and so Faust) trust the same CA."""
    properties = {key: value for key, value in secure.properties().items() if key != "ssl.ca.location"}
    settings = KafkaSettings.model_validate({**properties, "ssl.ca.pem": secure.certificates.ca.read_text()})
    assert faust_broker_options(settings)["broker_credentials"].ssl_context is not None
    topic = create_topic(secure, f"test.inline{uuid.uuid4().hex[:8]}.raw")
    producer = clients.aiokafka_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(topic, key=b"inline", value=b"ca")
    finally:
        await producer.stop()
    assert [key for key, _ in read_all(secure, topic, 1)] == [b"inline"]


def test_registry_and_pipelines_on_both_runtimes_end_to_end(
    secure: SecureKafka, secure_registry: Registry, tmp_path: Path
) -> None:
    """Both runtimes side by side (the Faust one on aiokafka), each on its own topics, then `tail` over the result."""
    config = secure.settings_file(tmp_path / "headwater.yaml", registry={"url": secure_registry.url})
    producer = clients.producer(secure.settings())
    records = 30
    workers: dict[str, tuple[str, subprocess.Popen[bytes], Path]] = {}
    for runtime in ("direct", "faust"):
        domain = f"sec{runtime}{uuid.uuid4().hex[:6]}"
        raw = create_topic(secure, f"{domain}.contacts.raw", partitions=2)
        serializer = encoder(secure_registry.client(), raw)
        for index in range(records):
            producer.produce(raw, key=f"C{index:06d}".encode(), value=serializer.encode(contact(index)))
        pipeline = pipeline_file(
            tmp_path, raw, quality=None, enrich=[{"provider": "sentiment", "options": {"text_field": "notes"}}]
        )
        process, log = spawn(secure, f"run-{runtime}", "run", str(pipeline), "--config", str(config),
                             "--status-port", "0", "--runtime", runtime)
        workers[runtime] = (raw, process, log)
    assert producer.flush(30) == 0
    try:
        for runtime, (raw, _, _) in workers.items():
            enriched = read_all(secure, raw.replace(".raw", ".enriched"), records, timeout=120)
            assert {key for key, _ in enriched} == {f"C{i:06d}".encode() for i in range(records)}, runtime
            assert {headers[envelope.SOURCE].rsplit("/", 2)[0] for _, headers in enriched} == {raw}, runtime
    finally:
        for _, process, log in workers.values():
            stop(process, log)

    output_topic = workers["direct"][0].replace(".raw", ".enriched")
    shown = headwater(secure, "tail", "tail", output_topic, "--from-beginning", "--max", str(records),
                      "--idle-timeout", "30", "--config", str(config))
    assert shown.returncode == 0, shown.stderr
    assert all(f"key=C{i:06d}" in shown.stdout for i in range(records)), shown.stdout[-2000:]


def test_schemas_cli_registers_through_the_registry_on_the_secure_broker(
    secure: SecureKafka, secure_registry: Registry, tmp_path: Path
) -> None:
    config = secure.settings_file(tmp_path / "headwater.yaml", registry={"url": secure_registry.url})
    registered = headwater(secure, "schemas-register", "schemas", "register", "--config", str(config))
    assert registered.returncode == 0, registered.stderr
    subjects = secure_registry.client().get_subjects()
    assert "crm.contacts.raw-value" in subjects and "erp.orders.enriched-value" in subjects, subjects


def test_webhook_connector_writes_through_sasl_ssl(
    secure: SecureKafka, secure_registry: Registry, tmp_path: Path
) -> None:
    topic = create_topic(secure, f"web{uuid.uuid4().hex[:8]}.views.raw")
    secure_registry.client().register_schema(f"{topic}-value", Schema(json.dumps(PAGE_VIEW), "AVRO"))
    port = free_port()
    connectors = [{"name": f"wh-{topic}", "connector": "webhook", "config": {"port": port, "topics": [topic]}}]
    config = secure.settings_file(tmp_path / "connect.yaml", registry={"url": secure_registry.url},
                                  connectors=connectors)
    process, log = spawn(secure, "connect", "connect", "run", str(config), "--status-port", "0")
    views = [{"view_id": f"v-{index}", "url": f"/page/{index}"} for index in range(5)]

    def accepted() -> bool:
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            response = httpx.post(f"http://127.0.0.1:{port}/topics/{topic}", json=views, timeout=30)
        except httpx.TransportError:
            return False
        assert response.status_code == 200, response.text
        return True

    try:
        wait_for(accepted, 60, "the webhook connector to accept page views")
    finally:
        stop(process, log)
    assert sorted(key for key, _ in read_all(secure, topic, 5)) == [f"v-{index}".encode() for index in range(5)]


def assert_one_line_refusal(name: str, returncode: int, output: str, user: str) -> None:
    lines = output.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert returncode != 0, (name, lines)
    assert len(errors) == 1, (name, lines)
    assert "refused the SASL_SSL connection" in errors[0] and f"as {user}" in errors[0], (name, errors)
    assert "invalid credentials" in errors[0], (name, errors)
    assert "Traceback" not in output and not any(line.startswith("%") for line in lines), (name, lines)


def test_wrong_password_ends_in_one_line_and_a_non_zero_exit(secure: SecureKafka, tmp_path: Path) -> None:
    """`run` on both runtimes, `tail`, `connect run` and `registry serve`, side by side, with a password the broker
    refuses."""
    config = secure.settings_file(tmp_path / "headwater.yaml", registry={"url": f"http://127.0.0.1:{free_port()}"})
    pipeline = pipeline_file(tmp_path, "sec.contacts.raw", quality=None)
    connectors = [{"name": "wh-wrong", "connector": "webhook",
                   "config": {"port": free_port(), "topics": ["sec.pageviews.raw"]}}]
    connect_config = secure.settings_file(tmp_path / "connect.yaml", registry={"url": f"http://127.0.0.1:{free_port()}"},
                                          connectors=connectors)
    commands: dict[str, Sequence[str]] = {
        "tail": ("tail", "sec.anything.raw", "--config", str(config)),
        **{f"run-{runtime}": ("run", str(pipeline), "--config", str(config), "--status-port", "0",
                              "--runtime", runtime) for runtime in ("direct", "faust")},
        "connect": ("connect", "run", str(connect_config), "--status-port", "0"),
        "registry": ("registry", "serve", "--port", str(free_port()), "--config", str(config)),
    }
    started = time.monotonic()
    running = {name: spawn(secure, f"wrong-{name}", *args, password=f"not-{secure.password}")
               for name, args in commands.items()}
    for name, (process, log) in running.items():
        try:
            process.wait(max(1.0, started + WRONG_PASSWORD_DEADLINE_S - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            pytest.fail(f"{name} with a wrong password still ran after {WRONG_PASSWORD_DEADLINE_S:.0f}s")
        assert_one_line_refusal(name, process.returncode, log.read_text(errors="replace"), "pipeline")


def test_broker_cli_refuses_incomplete_or_unusable_tls_settings(tmp_path: Path) -> None:
    certificates = write_certificates(tmp_path / "tls")
    users = tmp_path / "users"
    users.write_text("someone:something\n")
    data_dir = str(tmp_path / "broker")
    missing = plain_headwater("broker", "start", "--data-dir", data_dir, "--ssl-key", str(certificates.key))
    assert missing.returncode == 1
    assert "a SASL_SSL listener also needs --ssl-certificate-chain, --ssl-ca, --scram-users-file" in missing.stderr
    traditional_key = tmp_path / "traditional.pem"
    traditional_key.write_text("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")
    unusable = plain_headwater(
        "broker", "start", "--data-dir", data_dir, "--port", str(free_port()),
        "--ssl-certificate-chain", str(certificates.chain), "--ssl-key", str(traditional_key),
        "--ssl-ca", str(certificates.ca), "--scram-users-file", str(users),
    )
    assert unusable.returncode == 1
    assert unusable.stderr.strip().splitlines() == [
        f"error: the broker's private key {traditional_key} must be an unencrypted PKCS#8 PEM key (-----BEGIN "
        "PRIVATE KEY-----); convert it with `openssl pkcs8 -topk8 -nocrypt`"
    ], unusable.stderr
    assert "Traceback" not in unusable.stderr and not (tmp_path / "broker" / "kraft").exists()

    formatted_without_users = tmp_path / "plaintext-broker"
    (formatted_without_users / "kraft").mkdir(parents=True)
    (formatted_without_users / "kraft" / "meta.properties").write_text(
        "version=1\ncluster.id=PlainClusterAAAAAAAAAAA\nnode.id=1\n"
    )
    refused = plain_headwater(
        "broker", "start", "--data-dir", str(formatted_without_users), "--port", str(free_port()),
        "--ssl-certificate-chain", str(certificates.chain), "--ssl-key", str(certificates.key),
        "--ssl-ca", str(certificates.ca), "--scram-users-file", str(users),
    )
    assert refused.returncode == 1
    assert "SCRAM users are created when the data dir is formatted" in refused.stderr, refused.stderr
    assert "has users none, not ['someone']" in refused.stderr, refused.stderr


def test_no_secret_in_any_log(secure: SecureKafka) -> None:
    """Runs last: every log the module's processes and the broker wrote, searched for the user's password (the
    wrong passwords tried above contain it, so they are searched too) and the broker's inter-broker password."""
    logs = secure.every_log()
    names = {path.name for path in logs}
    assert "server.log" in names and secure.broker.log_file.stat().st_size > 0
    assert any(name.startswith("registry-") for name in names), "the module's subprocess logs were collected"
    inter_broker = json.loads((secure.broker.data_dir / SECURITY_FILE).read_text())["inter_broker_password"]
    for secret in (secure.password, inter_broker):
        leaking = [str(path) for path in logs if secret.encode() in path.read_bytes()]
        assert leaking == []
