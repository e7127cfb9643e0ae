"""The command line: `run` refuses a bad pipeline file before connecting, `tail` shows records and dead letters,
`up` runs the whole demo on its own broker and registry and stops what it started."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from headwater import envelope
from headwater.ports import free_port
from streams.broker import EmbeddedBroker
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService
from tests.pipeline_support import contact, encoder, pipeline_file, producer

HEADWATER = str(Path(sys.executable).parent / "headwater")


def headwater(*args: str, limit_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HEADWATER, *args], capture_output=True, text=True, timeout=limit_s, check=False,
                          env={**os.environ, "COLUMNS": "200"})


def test_run_rejects_an_invalid_pipeline_naming_file_and_field(tmp_path: Path) -> None:
    path = pipeline_file(
        tmp_path, "crm.contacts.raw", transform=[], enrich=[{"provider": "sentiment", "options": {}}]
    )
    started = time.monotonic()
    result = headwater("run", str(path), "--bootstrap-servers", f"127.0.0.1:{free_port()}")
    assert result.returncode == 2
    assert str(path) in result.stderr and "enrich.0" in result.stderr and "text_field" in result.stderr
    assert time.monotonic() - started < 30
    missing = pipeline_file(
        tmp_path, "crm.contacts.raw", transform=[], enrich=[],
        output={"topic": "crm.contacts.enriched", "schema": "no/such"},
    )
    result = headwater("run", str(missing))
    assert result.returncode == 2 and "field output.schema" in result.stderr


def test_tail_prints_decoded_records_and_dead_letter_reasons(kafka: KafkaService, registry: RegistryService) -> None:
    topic = kafka.create_topic()
    serializer = encoder(registry.client(), topic)
    out = producer(kafka.bootstrap)
    out.produce(topic, serializer.encode(contact(7, first_name="Zoë")), b"C000007",
                headers=[(envelope.SOURCE, b"x/0/1")])
    out.produce(topic, b"junk", b"bad", headers=envelope.dead_letter_headers(
        [], stage="decode", error_class="WireFormatError", message="unknown magic byte 106", source="x/0/2"))
    assert out.flush(30) == 0
    result = headwater("tail", topic, "--from-beginning", "--max", "2", "--idle-timeout", "20",
                       "--bootstrap-servers", kafka.bootstrap, "--registry-url", registry.url)
    assert result.returncode == 0, result.stderr
    assert '"first_name": "Zoë"' in result.stdout and "hw-source=x/0/1" in result.stdout
    assert "DLQ x/0/2 key=bad stage=decode class=WireFormatError reason=unknown magic byte 106" in result.stdout


def test_up_runs_the_demo_and_stops_everything(tmp_path: Path) -> None:
    data_dir = tmp_path / "hw"
    result = headwater("up", "--records", "1500", "--data-dir", str(data_dir), "--status-port", "0",
                       limit_s=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "records in 1,500 = out" in result.stdout and "(holds)" in result.stdout
    assert "Headwater pipelines (direct runtime)" in result.stdout
    assert "amount_not_negative" in result.stdout and "WireFormatError" in result.stdout
    assert "Contacts by country (DuckDB)" in result.stdout and "warehouse rows: crm.contacts.enriched" in result.stdout
    # the LLM step ran against the offline fake: calls made, repeated notes answered from the cache, cost counted
    llm_row = re.search(r"crm_contacts@1 +│ openai +│ +([\d,]+) │ +([\d,]+) │ +(\d+\.\d+)", result.stdout)
    assert llm_row is not None, result.stdout[-3000:]
    calls, hits, cost = (float(value.replace(",", "")) for value in llm_row.groups())
    assert calls > 0 and hits > 0 and cost > 0
    assert "Intent from the LLM step (DuckDB)" in result.stdout and "complaint" in result.stdout
    assert not EmbeddedBroker(data_dir / "broker").status().running
    assert (data_dir / "warehouse.duckdb").is_file()


def test_up_with_a_sample_too_small_to_fill_every_table_still_summarises(tmp_path: Path) -> None:
    # Ten events leave the ERP output empty (its few records are dead letters): the warehouse query of a table
    # that never got a row is skipped instead of failing the demo.
    data_dir = tmp_path / "hw"
    result = headwater("up", "--records", "10", "--data-dir", str(data_dir), "--status-port", "0",
                       limit_s=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "records in 10 = out" in result.stdout and "(holds)" in result.stdout
    assert "erp.orders.enriched 0" in result.stdout
    assert "Orders by currency (DuckDB)" not in result.stdout
    assert not EmbeddedBroker(data_dir / "broker").status().running
