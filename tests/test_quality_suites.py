"""A suite is checked when the pipeline loads: each kind of bad suite refused in one line naming file and
expectation; expectations classified from GX's own classes; the shipped suites load with their pipelines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from quality.suite import load_suite
from streams.runtime.config import SUITES_DIR, PipelineConfigError, load_pipeline
from tests.pipeline_support import pipeline_file

NOT_NULL = {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "contact_id"}}
MEAN = {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "sentiment", "min_value": 0},
        "meta": {"name": "sentiment_mean"}}


def _pipeline(tmp_path: Path, expectations: list[dict[str, Any]], **quality: Any) -> Path:
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps({"name": "s", "expectations": expectations}))
    return pipeline_file(tmp_path, "crm.suitecheck.raw", quality={"suite": str(suite), **quality})


@pytest.mark.parametrize(("expectations", "quality", "reason"), [
    ([{"type": "expect_column_values_to_be_purple", "kwargs": {"column": "contact_id"}, "meta": {"name": "purple"}}],
     {}, "expectation purple: unknown expectation type expect_column_values_to_be_purple"),
    ([{**NOT_NULL, "kwargs": {"column": "shoe_size"}, "meta": {"name": "shoes"}}],
     {}, "expectation shoes: column shoe_size is not a field of crm/contact_enriched"),
    ([{**NOT_NULL, "meta": {"severity": "fatal", "name": "id_present"}}],
     {}, "expectation id_present: severity 'fatal' is not error|warn"),
    ([NOT_NULL, MEAN], {}, "expectation sentiment_mean: an aggregate expectation needs quality.window"),
    ([{**MEAN, "kwargs": {"column": "sentiment", "min_value": "low"}}], {"window": {"records": 5}},
     "expectation sentiment_mean: bad kwargs"),
])
def test_each_bad_suite_is_refused_in_one_line_naming_file_and_expectation(
    tmp_path: Path, expectations: list[dict[str, Any]], quality: dict[str, Any], reason: str
) -> None:
    path = _pipeline(tmp_path, expectations, **quality)
    with pytest.raises(PipelineConfigError) as refused:
        load_pipeline(path)
    message = str(refused.value)
    assert "\n" not in message
    assert str(path) in message and str(tmp_path / "suite.json") in message and reason in message


def test_a_window_is_records_or_seconds_and_a_horizon_a_duration(tmp_path: Path) -> None:
    with pytest.raises(PipelineConfigError, match=r"quality\.window: Value error, a window is either"):
        load_pipeline(_pipeline(tmp_path, [MEAN], window={"records": 5, "seconds": 10}))
    with pytest.raises(PipelineConfigError, match=r"quality\.unique_within: Value error, 'a week'"):
        load_pipeline(_pipeline(tmp_path, [NOT_NULL], unique_within="a week"))
    loaded = load_pipeline(_pipeline(tmp_path, [MEAN], window={"seconds": 30}, unique_within="12h"))
    assert loaded.quality is not None and loaded.quality.horizon_ms == 12 * 3_600_000


def test_kinds_come_from_gx_classes() -> None:
    suite = load_suite(SUITES_DIR / "crm_contacts_stream.json")
    assert {rule.name: rule.kind for rule in suite.rules} == {
        "contact_id_present": "record", "last_name_present": "record", "email_usable": "record",
        "contact_id_unique": "unique", "sentiment_not_souring": "aggregate", "countries_plausible": "aggregate",
        "phones_mostly_usable": "aggregate",  # `mostly` makes a map expectation a proportion of rows
    }


def test_shipped_suites_load_with_a_pipeline(tmp_path: Path) -> None:
    for suite in sorted(SUITES_DIR.glob("*.json")):
        if suite.stem.startswith("crm_"):
            load_pipeline(pipeline_file(tmp_path, "crm.shipped.raw",
                                        quality={"suite": suite.stem, "window": {"records": 100}}))
