"""Great Expectations suites over micro-batches: per-record blocking and warn-level verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quality.validator import PASS, QualityValidator, SuiteError

SUITES = Path(__file__).parent.parent / "quality" / "suites"


@pytest.fixture(scope="module")
def orders() -> QualityValidator:
    return QualityValidator(SUITES / "erp_orders.json")


def test_verdicts_per_record(orders: QualityValidator) -> None:
    good = {"order_number": "SO-1", "amount_minor": 100, "status": "open", "customer_email": "a@b.c",
            "phone_e164": "+14155552671"}
    records = [
        good,
        {**good, "amount_minor": -5},
        {**good, "status": "lost", "customer_email": None},
        {**good, "order_number": None, "phone_e164": None},
    ]
    verdicts = orders.validate(records)
    assert verdicts[0] == PASS
    assert verdicts[1].blocking == ("amount_not_negative",) and verdicts[1].warnings == ()
    assert verdicts[2].blocking == () and set(verdicts[2].warnings) == {"status_known", "email_usable"}
    assert verdicts[3].blocking == ("order_number_present",) and verdicts[3].warnings == ("phone_usable",)


def test_a_batch_is_one_call_and_fast_enough(orders: QualityValidator) -> None:
    records = [{"order_number": f"SO-{n}", "amount_minor": n - 10, "status": "open", "customer_email": "a@b.c",
                "phone_e164": "+1"} for n in range(2000)]
    verdicts = orders.validate(records)
    assert sum(1 for verdict in verdicts if verdict.blocking) == 10


def test_aggregates_judge_windows_not_records(tmp_path: Path) -> None:
    suite = tmp_path / "rows.json"
    suite.write_text(json.dumps({"name": "rows", "expectations": [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 5},
         "meta": {"severity": "warn", "name": "enough_rows"}},
        {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "a", "max_value": 1},
         "meta": {"name": "small_mean"}},
    ]}))
    validator = QualityValidator(suite)
    assert validator.validate([{"a": 1}, {"a": 2}]) == [PASS, PASS]
    result = validator.validate_window([{"a": 1}, {"a": 2}])
    assert not result.success
    assert [(outcome.name, outcome.success, outcome.observed_value) for outcome in result.outcomes] == [
        ("enough_rows", False, 2), ("small_mean", False, 1.5)
    ]
    assert json.dumps(result.gx_result)  # the GX result is plain JSON, ready for a report


def test_bad_suites_are_rejected(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(SuiteError, match="cannot read"):
        QualityValidator(broken)
    severity = tmp_path / "severity.json"
    severity.write_text(json.dumps({"name": "s", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}, "meta": {"severity": "fatal"}},
    ]}))
    with pytest.raises(SuiteError, match=r"severity 'fatal' is not error\|warn"):
        QualityValidator(severity)
