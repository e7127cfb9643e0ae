"""What every declarative transform step is: a pydantic config (its `op` names it) that applies itself to a record."""

from __future__ import annotations

from abc import ABC, abstractmethod

from pydantic import BaseModel, ConfigDict

from headwater.fields import Record


class Step(BaseModel, ABC):
    """One declarative step; applies in place and raises `TransformError` naming the field when it cannot."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @abstractmethod
    def apply(self, record: Record) -> None: ...
