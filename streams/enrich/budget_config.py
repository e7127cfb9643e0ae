"""What an enrichment step may spend: a step's `budget` option (enforced by `budget.BudgetLedger`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from streams.enrich.budget_book import Window


class BudgetConfig(BaseModel):
    """What one enrichment step may spend, all workers of the pipeline together."""

    model_config = ConfigDict(extra="forbid")

    usd_per_hour: float | None = Field(None, gt=0, description="Most USD spent per UTC clock hour.")
    usd_per_day: float | None = Field(None, gt=0, description="Most USD spent per UTC day.")
    on_exceed: Literal["pause", "skip", "dead_letter"] = Field(
        "pause",
        description="With the budget used up: wait for the window to reset (pause), pass records without this "
        "enrichment and say so in `hw-enrich` (skip), or dead-letter them with reason `budget` (dead_letter).",
    )
    reservation_timeout_seconds: float = Field(
        600.0, gt=0,
        description="A reservation not settled by then belongs to a worker that vanished: its estimate is charged "
        "as spent. Longer than a call with all its retries.",
    )

    @model_validator(mode="after")
    def _some_limit(self) -> BudgetConfig:
        if self.usd_per_hour is None and self.usd_per_day is None:
            raise ValueError("a budget needs usd_per_hour, usd_per_day or both")
        return self

    def limits(self) -> dict[Window, float]:
        """USD per window, for the windows this budget limits."""
        limits: dict[Window, float] = {}
        if self.usd_per_hour is not None:
            limits["hour"] = self.usd_per_hour
        if self.usd_per_day is not None:
            limits["day"] = self.usd_per_day
        return limits
