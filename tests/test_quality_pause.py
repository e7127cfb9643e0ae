"""`on_fail: pause` on both runtimes: a window failing an error-severity aggregate stops consumption after its batch,
`headwater quality resume` lets every worker go on; `headwater quality report` shows the window (and its Data Docs)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from headwater.settings import load_settings
from streams.cli import app
from streams.runtime.batches import WorkerOptions
from streams.runtime.config import load_pipeline
from streams.runtime.runner import RUNTIMES, RuntimeName, build_runtime
from tests import pipeline_hooks  # noqa: F401  (registers the `flaky` provider)
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService
from tests.pipeline_support import contact, encoder, pipeline_file, produce_values, read_topic
from tests.test_pipeline_e2e import run_until

SUITE = {"name": "pausing", "expectations": [
    {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "sentiment", "max_value": 0.1},
     "meta": {"name": "sentiment_mean_low", "severity": "error"}},
]}


def headwater(*args: str) -> Result:
    """The command line in this process (a subprocess pays GX's import again, seconds on a loaded host)."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})


async def _until(condition: object, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("runtime_name", RUNTIMES)
async def test_a_failed_window_pauses_until_resumed_and_its_report_reads_as_a_table_and_data_docs(
    kafka: KafkaService, registry: RegistryService, tmp_path: Path, runtime_name: RuntimeName
) -> None:
    raw = kafka.create_topic(f"crm.p{uuid.uuid4().hex[:8]}.raw")
    domain, entity = raw.split(".")[:2]
    suite = tmp_path / "pausing.json"
    suite.write_text(json.dumps(SUITE))
    config = load_pipeline(pipeline_file(
        tmp_path, raw, enrich=[{"provider": "sentiment", "options": {"text_field": "notes"}}],
        batch={"size": 5, "linger_ms": 20},
        quality={"suite": str(suite), "window": {"records": 5}, "on_fail": "pause"},
    ))
    serializer = encoder(registry.client(), raw)
    produce_values(kafka.bootstrap, raw, [(f"k{n}".encode(), serializer.encode(contact(n))) for n in range(12)])
    settings = load_settings(kafka={"bootstrap.servers": kafka.bootstrap}, registry={"url": registry.url})
    runtime = build_runtime(runtime_name, [config], settings, WorkerOptions(session_timeout_ms=6000))
    pipeline = runtime.pipelines[0]
    connection = ["--bootstrap-servers", kafka.bootstrap]

    def state() -> str:
        control = [read for read in read_topic(kafka.bootstrap, "_headwater.quality.control", 1, settle=0.3)
                   if read.key == config.name.encode()]
        return str(json.loads(control[-1].value or b"")["state"]) if control else "running"

    async def while_paused() -> None:
        await _until(lambda: pipeline.stats.records_in >= 5)
        await _until(lambda: state() == "paused")
        paused_at = pipeline.stats.records_in
        assert paused_at < 12
        assert len(read_topic(kafka.bootstrap, f"{domain}.{entity}.enriched", paused_at, settle=0.5)) == paused_at
        assert pipeline.stats.records_in == paused_at, "nothing is consumed past the failed window while paused"
        # Each later full window fails too and pauses again: resume until every record is in.
        while pipeline.stats.records_in < 12:
            if state() == "paused":
                resumed = await asyncio.to_thread(headwater, "quality", "resume", config.name, *connection)
                assert resumed.exit_code == 0, resumed.output
            await _until(lambda: pipeline.stats.records_in >= 12 or state() == "paused")

    await run_until(runtime, lambda: pipeline.stats.records_in >= 1, while_running=while_paused)
    assert pipeline.stats.records_in == 12 == pipeline.stats.records_out

    shown = await asyncio.to_thread(headwater, "quality", "report", f"{domain}.{entity}.quality",
                                    "--html", str(tmp_path / "docs"), *connection)
    assert shown.exit_code == 0, shown.output
    assert f"{raw}/0:0-4" in shown.output and f"{raw}/0:5-9" in shown.output and "FAIL" in shown.output
    index = (tmp_path / "docs" / "index.html").read_text()
    assert index.count("<li>") == 2
    assert "Data documentation compiled by Great Expectations" in (tmp_path / "docs" / "window-00001.html").read_text()


def test_check_names_failing_lines_and_observed_aggregates(tmp_path: Path) -> None:
    sample = tmp_path / "sample.jsonl"
    rows = [{"contact_id": "C1", "last_name": "Åberg", "email_normalized": "a@b.c", "sentiment": -0.9,
             "country_code": "DE", "phone_e164": None},
            {"contact_id": "C2", "last_name": "", "email_normalized": None, "sentiment": -0.8,
             "country_code": "DE", "phone_e164": None},
            {"contact_id": "C1", "last_name": "Berg", "email_normalized": "c@d.e", "sentiment": -0.7,
             "country_code": "FR", "phone_e164": "+4930123"}]
    sample.write_text("".join(json.dumps(row) + "\n" for row in rows))
    checked = headwater("quality", "check", "crm_contacts_stream", "--input", str(sample))
    assert checked.exit_code == 1, checked.output
    lines = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:]]
             for line in checked.output.splitlines() if line.count("│") >= 6}
    assert lines["last_name_present"] == ["record", "error", "FAIL", "2", ""]
    assert lines["contact_id_unique"] == ["unique", "error", "FAIL", "3", ""]
    assert lines["email_usable"] == ["record", "warn", "FAIL", "2", ""]
    assert lines["sentiment_not_souring"][:3] == ["aggregate", "error", "FAIL"]
    assert float(lines["sentiment_not_souring"][3]) == pytest.approx(-0.8)
    assert lines["contact_id_present"][2] == "pass"
