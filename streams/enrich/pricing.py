"""Price lists: what a provider's model costs per billed unit, and when the public list price was read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PriceList:
    """USD per unit of each billed quantity (`input_tokens`, `output_tokens`, `units`, `characters`, `calls`,
    `pages`); `read_on` and `source` say where a default came from, so a reader can check it is still current."""

    usd_per: Mapping[str, float] = field(default_factory=dict)
    read_on: str = ""
    source: str = ""

    def cost(self, billed: Mapping[str, float]) -> float:
        return sum(self.usd_per.get(quantity, 0.0) * amount for quantity, amount in billed.items())

    def overridden(self, prices: Mapping[str, float] | None) -> PriceList:
        """This list with a pipeline's own prices in place of the list prices it names."""
        if not prices:
            return self
        return PriceList({**self.usd_per, **prices}, read_on="pipeline", source="pipeline config")


FREE = PriceList(read_on="", source="local model")
