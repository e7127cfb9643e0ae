"""Each declarative transform step on real libraries (phonenumbers, pycountry), and how a step fails."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from streams.transforms import TransformError, TransformStep

STEP: TypeAdapter[Any] = TypeAdapter(TransformStep)


def apply(step: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    STEP.validate_python(step).apply(record)
    return record


def test_rename_drop_default_coalesce() -> None:
    record = {"a": 1, "b": None, "c": "", "d": "x", "nested": {"e": 2}}
    apply({"op": "rename", "field": "nested.e", "to": "e"}, record)
    apply({"op": "drop", "fields": ["a"]}, record)
    apply({"op": "default", "field": "b", "value": "filled"}, record)
    apply({"op": "default", "field": "c", "value": "blank", "when_empty": True}, record)
    apply({"op": "coalesce", "fields": ["missing", "c", "d"], "to": "first"}, record)
    assert record == {"b": "filled", "c": "blank", "d": "x", "nested": {}, "e": 2, "first": "blank"}


def test_cast_converts_and_fails_naming_the_field() -> None:
    record = {"n": " 42 ", "f": "1.5", "flag": "yes", "s": 7}
    for field, to in [("n", "long"), ("f", "double"), ("flag", "boolean"), ("s", "string")]:
        apply({"op": "cast", "field": field, "to": to}, record)
    assert record == {"n": 42, "f": 1.5, "flag": True, "s": "7"}
    with pytest.raises(TransformError, match="field n"):
        apply({"op": "cast", "field": "n", "to": "long"}, {"n": "forty-two"})


def test_trim_and_case_are_unicode_aware() -> None:
    record = {"name": "  Zoë   Åberg ", "empty": "   ", "stage": "CUSTOMER"}
    apply({"op": "trim", "fields": ["name", "empty"]}, record)
    apply({"op": "case", "fields": ["stage"], "to": "lower"}, record)
    apply({"op": "case", "fields": ["name"], "to": "upper"}, record)
    assert record == {"name": "ZOË ÅBERG", "empty": None, "stage": "customer"}


def test_normalise_email() -> None:
    record = {"a": "  Ana.Garcia@Example.COM ", "b": "ana-at-example.com", "c": None}
    for field in "abc":
        apply({"op": "normalise_email", "field": field, "to": f"{field}_out"}, record)
    assert (record["a_out"], record["b_out"], record["c_out"]) == ("ana.garcia@example.com", None, None)
    with pytest.raises(TransformError, match="field b"):
        apply({"op": "normalise_email", "field": "b", "invalid": "error"}, record)


def test_phone_to_e164_with_region_from_a_field() -> None:
    record = {"us": "(415) 555-2671", "de": "030 12345678", "cc": "DE", "bad": "call me", "intl": "+44 20 7946 0018"}
    apply({"op": "phone_e164", "field": "us", "default_region": "US"}, record)
    apply({"op": "phone_e164", "field": "de", "region_field": "cc", "default_region": "US"}, record)
    apply({"op": "phone_e164", "field": "bad", "default_region": "US"}, record)
    apply({"op": "phone_e164", "field": "intl"}, record)
    assert (record["us"], record["de"], record["bad"], record["intl"]) == (
        "+14155552671", "+493012345678", None, "+442079460018",
    )


def test_country_iso_from_names_and_codes() -> None:
    values = ["Germany", "deutschland", "usa", "FRA", "gb", "Atlantis", None]
    results = [apply({"op": "country_iso", "field": "c"}, {"c": value})["c"] for value in values]
    assert results == ["DE", "DE", "US", "FR", "GB", None, None]
    assert apply({"op": "country_iso", "field": "c", "format": "alpha3"}, {"c": "Japan"})["c"] == "JPN"


def test_minor_units_uses_the_iso_4217_exponent_exactly() -> None:
    cases = [
        (19.99, "EUR", 1999), ("1234", "JPY", 1234), (1.2345, "KWD", 1234), (1.2346, "KWD", 1235),
        (0.1 + 0.2, "usd", 30),
    ]
    for amount, currency, expected in cases:
        step = {"op": "minor_units", "amount": "a", "currency": "c", "to": "m"}
        record = apply(step, {"a": amount, "c": currency})
        assert record["m"] == expected
    with pytest.raises(TransformError, match="not an ISO 4217 currency"):
        apply({"op": "minor_units", "amount": "a", "currency": "c", "to": "m"}, {"a": 1, "c": "XXY"})


def test_to_utc_from_text_epoch_and_naive_times() -> None:
    record = {"iso": "2024-03-01T10:00:00+02:00", "z": "2024-03-01T08:00:00Z", "epoch": 1709280000000,
              "naive": "2024-03-01 09:00:00"}
    for field in ("iso", "z", "epoch"):
        apply({"op": "to_utc", "field": field}, record)
    apply({"op": "to_utc", "field": "naive", "assume_timezone": "Europe/Berlin"}, record)
    expected = datetime(2024, 3, 1, 8, tzinfo=UTC)
    assert record == {"iso": expected, "z": expected, "epoch": expected, "naive": expected}
    with pytest.raises(TransformError, match="field t"):
        apply({"op": "to_utc", "field": "t"}, {"t": "yesterday"})


def test_hash_with_key_from_env_and_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HW_TEST_KEY", "secret")
    plain = apply({"op": "hash", "fields": ["email"]}, {"email": "a@b.c"})["email"]
    keyed = apply({"op": "hash", "fields": ["email"], "key_env": "HW_TEST_KEY"}, {"email": "a@b.c"})["email"]
    assert len(plain) == 64 and plain != keyed and "a@b.c" not in keyed
    assert apply({"op": "mask", "fields": ["p"], "keep_last": 2}, {"p": "+4930123"})["p"] == "******23"


def test_hook_runs_and_an_unimportable_hook_is_rejected_at_load() -> None:
    record = apply({"op": "hook", "function": "tests.pipeline_hooks:explode_on_marker"}, {"job_title": "cfo"})
    assert record == {"job_title": "CFO"}
    with pytest.raises(RuntimeError):
        apply({"op": "hook", "function": "tests.pipeline_hooks:explode_on_marker"}, {"first_name": "EXPLODE"})
    with pytest.raises(ValidationError, match="no function nope"):
        STEP.validate_python({"op": "hook", "function": "tests.pipeline_hooks:nope"})


def test_unknown_op_and_unknown_option_are_rejected() -> None:
    with pytest.raises(ValidationError, match="upper_case"):
        STEP.validate_python({"op": "upper_case", "fields": ["a"]})
    with pytest.raises(ValidationError, match="colour"):
        STEP.validate_python({"op": "trim", "fields": ["a"], "colour": "red"})
