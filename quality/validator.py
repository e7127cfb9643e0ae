"""Great Expectations suites applied to micro-batches, with a verdict per record.

One ephemeral GX context per validator (so per worker), built once: GX costs tens of milliseconds per call,
so a whole batch is validated in one call and the failures are mapped back to records by row index.
An expectation's `meta.severity` is `error` (blocking: the record becomes a dead letter; the default) or `warn`
(the record passes and its `hw-quality` header names the failure); `meta.name` names it, else `type(column)`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from headwater import fields

log = logging.getLogger(__name__)
Severity = Literal["error", "warn"]
_COLUMN_KWARGS = ("column", "column_A", "column_B")


class SuiteError(ValueError):
    """A suite file that cannot be loaded."""


@dataclass(frozen=True)
class Verdict:
    """The failed expectations of one record, by severity."""

    blocking: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


PASS = Verdict()


@dataclass(frozen=True)
class _Rule:
    name: str
    severity: Severity


def _rule(expectation: Mapping[str, Any], path: Path) -> _Rule:
    meta = expectation.get("meta") or {}
    severity = meta.get("severity", "error")
    if severity not in ("error", "warn"):
        raise SuiteError(f"{path}: expectation {expectation.get('type')} has severity {severity!r}, not error|warn")
    kwargs = expectation.get("kwargs") or {}
    target = kwargs.get("column") or ",".join(kwargs.get("column_list") or [])
    name = meta.get("name") or f"{expectation.get('type')}({target})"
    return _Rule(str(name), severity)


def _columns(expectations: Sequence[Mapping[str, Any]]) -> list[str]:
    found: list[str] = []
    for expectation in expectations:
        kwargs = expectation.get("kwargs") or {}
        candidates = [kwargs.get(key) for key in _COLUMN_KWARGS] + list(kwargs.get("column_list") or [])
        found.extend(column for column in candidates if isinstance(column, str) and column not in found)
    return found


class QualityValidator:
    def __init__(self, suite_path: Path) -> None:
        try:
            definition = json.loads(suite_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SuiteError(f"cannot read quality suite {suite_path}: {exc}") from exc
        expectations = definition.get("expectations") if isinstance(definition, dict) else None
        if not isinstance(expectations, list):
            raise SuiteError(f"{suite_path}: a suite is a JSON object with an `expectations` list")
        self.path = suite_path
        self.rules = [_rule(expectation, suite_path) for expectation in expectations]
        self.columns = _columns(expectations)
        self._lock = threading.Lock()
        self._batch_definition, self._suite = self._build(definition, suite_path)

    @staticmethod
    def _build(definition: dict[str, Any], suite_path: Path) -> tuple[Any, Any]:
        import great_expectations as gx
        from great_expectations.core.expectation_suite import ExpectationSuite
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        for name in [*logging.root.manager.loggerDict, "great_expectations"]:
            if name.startswith("great_expectations"):
                logging.getLogger(name).setLevel(logging.ERROR)
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        try:
            suite = context.suites.add(ExpectationSuite(**{**definition, "name": definition.get("name", "suite")}))
        except Exception as exc:  # GX reports an unknown expectation or bad kwargs with several types
            raise SuiteError(f"{suite_path}: {exc}") from exc
        asset = context.data_sources.add_pandas("headwater").add_dataframe_asset(name="micro_batch")
        return asset.add_batch_definition_whole_dataframe("whole"), suite

    def frame(self, records: Sequence[Mapping[str, Any]]) -> Any:
        import pandas as pd

        paths = {column: fields.split(column) for column in self.columns}
        return pd.DataFrame(
            {column: [fields.get(record, path) for record in records] for column, path in paths.items()}
        )

    def validate(self, records: Sequence[Mapping[str, Any]]) -> list[Verdict]:
        """One verdict per record (blocking and warn-level failures), from one GX validation of the batch."""
        if not records or not self.rules:
            return [PASS] * len(records)
        frame = self.frame(records)
        with self._lock:
            batch = self._batch_definition.get_batch(batch_parameters={"dataframe": frame})
            result = batch.validate(self._suite, result_format="COMPLETE")
        blocking: list[list[str]] = [[] for _ in records]
        warnings: list[list[str]] = [[] for _ in records]
        for outcome in result.results:
            if outcome.success:
                continue
            rule = _rule(outcome.expectation_config.to_json_dict(), self.path)
            failed_rows = (outcome.result or {}).get("unexpected_index_list")
            rows = range(len(records)) if failed_rows is None else failed_rows
            target = blocking if rule.severity == "error" else warnings
            for row in rows:
                target[int(row)].append(rule.name)
        return [
            Verdict(tuple(block), tuple(warn)) if block or warn else PASS
            for block, warn in zip(blocking, warnings, strict=True)
        ]
