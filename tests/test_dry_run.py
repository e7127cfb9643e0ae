"""`headwater run PIPELINE.yaml --dry-run --input SAMPLE.jsonl`: every stage on JSON records with no broker and no
registry, each output and dead letter printed with its reason, `--limit`, `--strict`."""

from __future__ import annotations

import json
from pathlib import Path

from headwater.ports import free_port
from tests.cli import headwater
from tests.pipeline_support import contact, pipeline_file

SHIPPED = Path(__file__).parent.parent / "streams" / "pipelines" / "crm_contacts.yaml"


def _sample(tmp_path: Path) -> Path:
    rows = [json.dumps(contact(n)) for n in range(6)]
    rows[2] = json.dumps(contact(2, first_name="EXPLODE"))
    rows.insert(3, json.dumps({"contact_id": 7}))
    rows.insert(4, "not json")
    path = tmp_path / "sample.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_dry_run_prints_outputs_and_dead_letters_without_a_broker(tmp_path: Path) -> None:
    pipeline = pipeline_file(tmp_path, "crm.contacts.raw", quality=None,
                             enrich=[{"provider": "sentiment", "options": {"text_field": "notes"}}])
    closed = f"127.0.0.1:{free_port()}"
    result = headwater("run", str(pipeline), "--dry-run", "--input", str(_sample(tmp_path)),
                       "--bootstrap-servers", closed, "--registry-url", f"http://{closed}", env={"COLUMNS": "400"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    outputs = [line for line in lines if " → " in line]
    assert len(outputs) == 5
    first = json.loads(outputs[0].split(" → ", 1)[1])
    assert first["contact_id"] == "C000000" and first["email_normalized"] == "zoe.0@example.com"
    assert first["sentiment"] is not None
    assert "line 3 dead letter stage=transform class=RuntimeError reason=hook raised: hook refused the record" in lines
    assert "line 4 dead letter stage=decode class=SchemaViolation reason=field contact_id: 7 is not of type string" \
        in lines
    assert any(line.startswith("line 5 dead letter stage=decode class=InvalidJSON") for line in lines)
    assert "8 records, 5 out, 3 dead-lettered" in lines[-1] and "per million records" in lines[-1]

    strict = headwater("run", str(pipeline), "--dry-run", "--input", str(_sample(tmp_path)), "--strict")
    assert strict.returncode == 1
    limited = headwater("run", str(pipeline), "--dry-run", "--input", str(_sample(tmp_path)), "--limit", "2",
                        "--strict")
    assert limited.returncode == 0, limited.stdout
    assert "2 records, 2 out, 0 dead-lettered" in limited.stdout


def test_dry_run_of_the_shipped_pipeline_applies_its_quality_suite(tmp_path: Path) -> None:
    rows = [contact(0), contact(1, last_name="")]
    path = tmp_path / "two.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = headwater("run", str(SHIPPED), "--dry-run", "--input", str(path), env={"COLUMNS": "400"})
    assert result.returncode == 0, result.stderr
    assert "2 records, 1 out, 1 dead-lettered" in result.stdout
    assert "line 2 dead letter stage=quality" in result.stdout


def test_dry_run_refuses_a_missing_input_in_one_line(tmp_path: Path) -> None:
    result = headwater("run", str(SHIPPED), "--dry-run", "--input", str(tmp_path / "none.jsonl"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: input file {tmp_path / 'none.jsonl'} does not exist"
