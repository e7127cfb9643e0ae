"""Great Expectations suites applied to a stream: verdicts per record, results per window.

One ephemeral GX context per validator (so per worker), built once: GX costs milliseconds per call, so record-level
expectations are validated over a whole micro-batch in one call and the failures mapped back to records by row
index, and aggregate expectations over a whole window in one call. Never per record.
An expectation's `meta.severity` is `error` (blocking: the record becomes a dead letter; the default) or `warn`
(the record passes and its `hw-quality` header names the failure); `meta.name` names it, else `type(column)`.
Uniqueness expectations are not run by GX here: their state is the stream's history (see `streams.runtime`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headwater import fields
from quality.suite import Rule, Suite, SuiteError, load_suite

log = logging.getLogger(__name__)
__all__ = ["PASS", "Outcome", "QualityValidator", "SuiteError", "Verdict", "WindowResult"]


@dataclass(frozen=True)
class Verdict:
    """The failed expectations of one record, by severity, with what explains each (e.g. the first occurrence)."""

    blocking: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[tuple[str, str], ...] = ()

    def merged(self, other: Verdict) -> Verdict:
        if other is PASS:
            return self
        return Verdict(self.blocking + other.blocking, self.warnings + other.warnings, self.notes + other.notes)

    def reason(self) -> str:
        notes = dict(self.notes)
        named = [f"{name} ({notes[name]})" if name in notes else name for name in self.blocking]
        return f"failed blocking expectations: {', '.join(named)}"


PASS = Verdict()


@dataclass(frozen=True)
class Outcome:
    """One expectation's result over a window."""

    name: str
    type: str
    severity: str
    success: bool
    observed_value: Any
    unexpected_count: int | None


@dataclass(frozen=True)
class WindowResult:
    outcomes: list[Outcome]
    gx_result: dict[str, Any] = field(repr=False)

    @property
    def success(self) -> bool:
        return all(outcome.success for outcome in self.outcomes)


def _named(rule: Rule) -> dict[str, Any]:
    """The expectation as GX takes it, its meta carrying the rule's name so results map back to rules."""
    definition = dict(rule.definition)
    definition["meta"] = {**(definition.get("meta") or {}), "name": rule.name}
    return definition


class _GxSuite:
    """One GX suite on a pandas data frame asset, validated under a lock (a context is not thread-safe)."""

    def __init__(self, name: str, rules: Sequence[Rule], path: Path) -> None:
        import great_expectations as gx
        from great_expectations.core.expectation_suite import ExpectationSuite
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.rules = {rule.name: rule for rule in rules}
        self.columns = list(dict.fromkeys(column for rule in rules for column in rule.columns))
        context = gx.get_context(mode="ephemeral")
        for logger in [*logging.root.manager.loggerDict, "great_expectations"]:
            if logger.startswith("great_expectations"):
                logging.getLogger(logger).setLevel(logging.ERROR)
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        try:
            self._suite = context.suites.add(
                ExpectationSuite(name=name, expectations=[_named(rule) for rule in rules])
            )
        except Exception as exc:  # GX reports bad kwargs with several types
            raise SuiteError(f"{path}: {exc}") from exc
        asset = context.data_sources.add_pandas("headwater").add_dataframe_asset(name=name)
        self._batch_definition = asset.add_batch_definition_whole_dataframe("whole")
        self._lock = threading.Lock()

    def frame(self, records: Sequence[Mapping[str, Any]]) -> Any:
        import pandas as pd

        paths = {column: fields.split(column) for column in self.columns}
        return pd.DataFrame(
            {column: [fields.get(record, path) for record in records] for column, path in paths.items()}
        )

    def validate(self, records: Sequence[Mapping[str, Any]]) -> Any:
        frame = self.frame(records)
        with self._lock:
            batch = self._batch_definition.get_batch(batch_parameters={"dataframe": frame})
            return batch.validate(self._suite, result_format="COMPLETE")

    def rule_of(self, outcome: Any) -> Rule:
        return self.rules[str(outcome.expectation_config.meta["name"])]


class QualityValidator:
    def __init__(self, suite: Suite | Path) -> None:
        self.suite = suite if isinstance(suite, Suite) else load_suite(suite)
        self.path = self.suite.path
        self.rules = list(self.suite.rules)
        record_rules, aggregate_rules = self.suite.of_kind("record"), self.suite.of_kind("aggregate")
        self.unique_rules = self.suite.of_kind("unique")
        self._records = _GxSuite(f"{self.suite.name}.records", record_rules, self.path) if record_rules else None
        self._windows = _GxSuite(f"{self.suite.name}.windows", aggregate_rules, self.path) if aggregate_rules else None

    @property
    def window_columns(self) -> list[str]:
        """The columns a window keeps of each record: only what the aggregate expectations read."""
        return self._windows.columns if self._windows is not None else []

    @property
    def has_aggregates(self) -> bool:
        return self._windows is not None

    def validate(self, records: Sequence[Mapping[str, Any]]) -> list[Verdict]:
        """One verdict per record from the record-level expectations, in one GX validation of the batch."""
        if not records or self._records is None:
            return [PASS] * len(records)
        result = self._records.validate(records)
        blocking: list[list[str]] = [[] for _ in records]
        warnings: list[list[str]] = [[] for _ in records]
        for outcome in result.results:
            if outcome.success:
                continue
            rule = self._records.rule_of(outcome)
            target = blocking if rule.severity == "error" else warnings
            for row in (outcome.result or {}).get("unexpected_index_list") or ():
                target[int(row)].append(rule.name)
        return [
            Verdict(tuple(block), tuple(warn)) if block or warn else PASS
            for block, warn in zip(blocking, warnings, strict=True)
        ]

    def validate_window(self, rows: Sequence[Mapping[str, Any]]) -> WindowResult:
        """The aggregate expectations over a window's rows, in one GX validation."""
        assert self._windows is not None, "a suite without aggregate expectations has no windows"
        result = self._windows.validate(rows).to_json_dict()  # JSON-safe: numpy values become plain ones
        outcomes = []
        for outcome in result["results"]:
            rule = self._windows.rules[str(outcome["expectation_config"]["meta"]["name"])]
            details = outcome.get("result") or {}
            outcomes.append(Outcome(
                rule.name, rule.type, rule.severity, bool(outcome["success"]), details.get("observed_value"),
                details.get("unexpected_count"),
            ))
        return WindowResult(outcomes, result)
