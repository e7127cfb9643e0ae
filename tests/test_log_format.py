"""`--log-format json` (or HEADWATER_LOG_FORMAT=json) on the long-running commands: every log line is one JSON object
whose keys are the structured event's own, values with spaces kept whole."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
import yaml

from headwater.logs import JsonFormatter, fields
from headwater.ports import free_port
from tests.cli import headwater
from tests.pipeline_support import pipeline_file


def test_an_event_line_becomes_its_pairs_with_spaces_kept_in_values() -> None:
    line = ("event=batch_retry pipeline=p@3 records=10 error=ProviderUnavailable: provider x unavailable: "
            "connection refused delay_s=0.2")
    assert fields(line) == {"event": "batch_retry", "pipeline": "p@3", "records": "10",
                            "error": "ProviderUnavailable: provider x unavailable: connection refused",
                            "delay_s": "0.2"}
    assert fields("a third party's line, no pairs") == {"message": "a third party's line, no pairs"}
    assert fields("Starting x=1") == {"message": "Starting x=1"}


def test_the_json_line_has_the_record_fields_the_event_and_the_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("streams.x", logging.ERROR, __file__, 1, "event=%s level=fake n=%d",
                                   ("stage_failed", 3), sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert (line["level"], line["logger"], line["event"], line["n"]) == ("ERROR", "streams.x", "stage_failed", "3")
    assert "ValueError: boom" in line["traceback"] and line["ts"].endswith("+00:00")


def connect_file(tmp_path: Path) -> Path:
    path = tmp_path / "connect.yaml"
    path.write_text(yaml.safe_dump({"connectors": [{"name": "wh", "connector": "duckdb", "config": {
        "database": str(tmp_path / "w.duckdb"), "topics": ["t.u.enriched"]}}]}), encoding="utf-8")
    return path


@pytest.mark.parametrize(("command", "by"), [("run", "flag"), ("connect run", "environment"),
                                              ("registry serve", "flag")])
def test_every_log_line_of_a_long_running_command_is_a_json_event(tmp_path: Path, command: str, by: str) -> None:
    args = {
        "run": ["run", str(pipeline_file(tmp_path, "crm.contacts.raw")), "--runtime", "direct",
                "--status-port", "0"],
        "connect run": ["connect", "run", str(connect_file(tmp_path)), "--status-port", "0"],
        "registry serve": ["registry", "serve", "--port", str(free_port())],
    }[command]
    chosen = ["--log-format", "json"] if by == "flag" else []
    result = headwater(*args, *chosen, "--bootstrap-servers", f"127.0.0.1:{free_port()}", "--startup-timeout", "2",
                       env={"HEADWATER_LOG_FORMAT": "json"} if by == "environment" else {}, timeout=60)
    # What is not a log line: the command's own last word (`error: ...`) and librdkafka's `%3|...` from its threads.
    lines = [line for line in result.stderr.splitlines() if line and not line.startswith(("error:", "%", " "))]
    events = [json.loads(line) for line in lines if not line.startswith("running ")]
    assert events, result.stderr
    assert all({"ts", "level", "logger"} <= event.keys() for event in events), result.stderr
    # Headwater's own events by their keys; a library's unstructured line (tenacity's retry note) as `message`.
    assert all("event" in event or "message" in event for event in events), result.stderr
    assert any(event["event"] == "broker_unreachable" for event in events), result.stderr
