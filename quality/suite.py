"""A Great Expectations suite file read and checked, its expectations classified by what they can judge.

GX tells the kinds apart itself: a *map* expectation (`ColumnMapExpectation`, `ColumnPairMapExpectation`,
`MulticolumnMapExpectation`) decides each row on its own values and names the failing rows, so it judges records;
one whose map metric is a uniqueness metric (`column_values.unique`, `compound_columns.unique`) depends on every
other row, so it judges records against the stream's history instead of the batch; any other expectation
(`ColumnAggregateExpectation`, a table-level `BatchExpectation`) describes a set of rows and judges windows. So
does a map expectation with `mostly` below 1: its verdict is a proportion of rows, which a single record has not.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from headwater import fields

Severity = Literal["error", "warn"]
Kind = Literal["record", "aggregate", "unique"]
_COLUMN_KWARGS = ("column", "column_A", "column_B")
_UNIQUE_METRICS = frozenset({"column_values.unique", "compound_columns.unique"})


class SuiteError(ValueError):
    """A suite file that cannot be used; the message names the file and the expectation."""


@dataclass(frozen=True)
class Rule:
    """One expectation of a suite: its name, severity, kind and the columns it reads."""

    name: str
    type: str
    severity: Severity
    kind: Kind
    columns: tuple[str, ...]
    definition: Mapping[str, Any]

    @property
    def on_key(self) -> bool:
        """A uniqueness expectation with `meta.on: key` judges the Kafka record key instead of its columns."""
        return bool((self.definition.get("meta") or {}).get("on") == "key")


def kind_of(expectation_type: str) -> Kind | None:
    """What an expectation type judges, from its GX class; None for a type GX does not know."""
    from great_expectations.exceptions.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )
    from great_expectations.expectations.registry import get_expectation_impl

    try:
        implementation = get_expectation_impl(expectation_type)
    except ExpectationNotFoundError:
        return None
    if issubclass(implementation, ColumnMapExpectation | ColumnPairMapExpectation | MulticolumnMapExpectation):
        return "unique" if getattr(implementation, "map_metric", None) in _UNIQUE_METRICS else "record"
    return "aggregate"


def _columns(kwargs: Mapping[str, Any]) -> tuple[str, ...]:
    candidates = [kwargs.get(key) for key in _COLUMN_KWARGS] + list(kwargs.get("column_list") or [])
    return tuple(dict.fromkeys(column for column in candidates if isinstance(column, str)))


def _rule(expectation: Any, path: Path, position: int) -> Rule:
    if not isinstance(expectation, dict) or not isinstance(expectation.get("type"), str):
        raise SuiteError(f"{path}: expectation #{position + 1} has no `type`")
    kind_name = expectation["type"]
    meta = expectation.get("meta") or {}
    kwargs = expectation.get("kwargs") or {}
    columns = _columns(kwargs)
    name = str(meta.get("name") or f"{kind_name}({','.join(columns)})")
    kind = kind_of(kind_name)
    if kind is None:
        raise SuiteError(f"{path}: expectation {name}: unknown expectation type {kind_name}")
    severity = meta.get("severity", "error")
    if severity not in ("error", "warn"):
        raise SuiteError(f"{path}: expectation {name}: severity {severity!r} is not error|warn")
    from great_expectations.expectations.registry import get_expectation_impl

    try:
        get_expectation_impl(kind_name)(**kwargs)
    except Exception as exc:  # GX reports bad kwargs as pydantic, type or value errors
        reason = " ".join(str(exc).split())
        raise SuiteError(f"{path}: expectation {name}: bad kwargs: {reason}") from None
    if meta.get("on") not in (None, "key") or (meta.get("on") == "key" and kind != "unique"):
        raise SuiteError(f"{path}: expectation {name}: meta.on is `key`, and only on a uniqueness expectation")
    if kind == "record" and float(kwargs.get("mostly", 1)) < 1:
        kind = "aggregate"
    return Rule(name, kind_name, severity, kind, columns, expectation)


@dataclass(frozen=True)
class Suite:
    path: Path
    name: str
    rules: tuple[Rule, ...]

    def of_kind(self, kind: Kind) -> tuple[Rule, ...]:
        return tuple(rule for rule in self.rules if rule.kind == kind)

    def check_columns(self, known: Collection[str], schema: str) -> None:
        """Every column an expectation reads is a field of the output schema (its first segment, for nested)."""
        for rule in self.rules:
            for column in rule.columns:
                if str(fields.split(column)[0]) not in known:
                    raise SuiteError(
                        f"{self.path}: expectation {rule.name}: column {column} is not a field of {schema}"
                    )

    def check_window(self, has_window: bool) -> None:
        """Aggregate expectations judge windows, so a pipeline with one must declare `quality.window`."""
        aggregates = self.of_kind("aggregate")
        if aggregates and not has_window:
            raise SuiteError(
                f"{self.path}: expectation {aggregates[0].name}: an aggregate expectation needs quality.window "
                "(records: N or seconds: S) in the pipeline"
            )


def load_suite(path: Path) -> Suite:
    try:
        definition = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SuiteError(f"cannot read quality suite {path}: {exc}") from exc
    expectations = definition.get("expectations") if isinstance(definition, dict) else None
    if not isinstance(expectations, list):
        raise SuiteError(f"{path}: a suite is a JSON object with an `expectations` list")
    rules = tuple(_rule(expectation, path, position) for position, expectation in enumerate(expectations))
    names = [rule.name for rule in rules]
    duplicated = next((name for name in names if names.count(name) > 1), None)
    if duplicated is not None:
        raise SuiteError(f"{path}: expectation {duplicated}: two expectations have this name; set meta.name")
    return Suite(path, str(definition.get("name") or path.stem), rules)
