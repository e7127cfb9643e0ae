"""Pipeline files: the shipped examples load, defaults are derived, and every kind of mistake names file and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.runtime.config import PipelineConfigError, load_pipeline

PIPELINES = Path(__file__).parent.parent / "streams" / "pipelines"


def write(tmp_path: Path, **changes: Any) -> Path:
    definition: dict[str, Any] = {
        "name": "orders", "input": {"topics": ["erp.orders.raw"]},
        "output": {"topic": "erp.orders.enriched", "schema": "erp/order_enriched"},
    }
    definition.update(changes)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(definition))
    return path


@pytest.mark.parametrize("name", ["crm_contacts.yaml", "erp_orders.yaml"])
def test_shipped_pipelines_load(name: str) -> None:
    config = load_pipeline(PIPELINES / name)
    assert config.dlq_topic.endswith(".dlq") and config.suite_path() is not None
    assert config.suite_path().is_file()  # type: ignore[union-attr]
    assert {step.provider for step in config.enrich} == {"sentiment", "language"}


def test_defaults_are_derived(tmp_path: Path) -> None:
    config = load_pipeline(write(tmp_path))
    assert (config.dlq_topic, config.group, config.label) == ("erp.orders.dlq", "headwater.orders", "orders@1")
    assert (config.batch.size, config.batch.linger_ms, config.output_subject) == (
        2000, 50, "erp.orders.enriched-value")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"output": {"schema": "erp/order_enriched"}}, "output.topic"),
        ({"input": {"topics": ["Orders"]}}, "input.topics"),
        ({"transform": [{"op": "phone_e164"}]}, "transform.0.phone_e164.field"),
        ({"transform": [{"op": "to_utc", "field": "t", "assume_timezone": "Mars/Olympus"}]},
         "transform.0.to_utc.assume_timezone"),
        ({"enrich": [{"provider": "telepathy"}]}, "enrich.0"),
        ({"enrich": [{"provider": "language", "options": {"text_field": "notes", "min_confidence": 2}}]}, "enrich.0"),
        ({"batch": {"size": 0}}, "batch.size"),
        ({"quality": {"suite": "no_such_suite"}}, "quality.suite"),
        ({"output": {"topic": "erp.orders.enriched", "schema": "missing.avsc"}}, "output.schema"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_mistakes_name_the_file_and_field(tmp_path: Path, changes: dict[str, Any], field: str) -> None:
    path = write(tmp_path, **changes)
    with pytest.raises(PipelineConfigError) as error:
        load_pipeline(path)
    assert str(path) in str(error.value) and f"field {field}" in str(error.value)


def test_unreadable_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed")
    with pytest.raises(PipelineConfigError, match="not valid YAML"):
        load_pipeline(broken)
    broken.write_text("- just\n- a list\n")
    with pytest.raises(PipelineConfigError, match="mapping at the top level"):
        load_pipeline(broken)
    with pytest.raises(PipelineConfigError, match="cannot read"):
        load_pipeline(tmp_path / "absent.yaml")
