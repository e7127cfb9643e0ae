"""A user's Python function `module:function` as a step: it gets the record and returns it (or changes it in place)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cached_property
from typing import Any, Literal

from pydantic import Field, field_validator

from headwater.fields import Record
from streams.transforms.base import Step

HookFunction = Callable[[Record], Record | None]


def resolve(reference: str) -> HookFunction:
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{reference!r} is not in the form module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name}: {exc}") from exc
    function: Any = getattr(module, attribute, None)
    if not callable(function):
        raise ValueError(f"{module_name} has no function {attribute}")
    resolved: HookFunction = function
    return resolved


class Hook(Step):
    op: Literal["hook"]
    function: str = Field(description="`package.module:function` taking the record dict, returning it or None.")

    @field_validator("function")
    @classmethod
    def _importable(cls, value: str) -> str:
        resolve(value)
        return value

    @cached_property
    def _function(self) -> HookFunction:
        return resolve(self.function)

    def apply(self, record: Record) -> None:
        result = self._function(record)
        if result is not None and result is not record:
            record.clear()
            record.update(result)
