"""List prices of hosted models by name: a provider's table of USD per million tokens, looked up for a model or its
dated snapshot (`gpt-4o-mini-2024-07-18`, `claude-haiku-4-5-20251001`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from streams.enrich.base import Provider
from streams.enrich.pricing import PriceList

log = logging.getLogger(__name__)

TOKEN_QUANTITIES = ("input_tokens", "output_tokens")


def list_price(model: str, table: Mapping[str, tuple[float, ...]]) -> tuple[float, ...] | None:
    """The prices of the longest table name that is the model or a prefix of its snapshot's name."""
    known = [name for name in table if model == name or model.startswith(name + "-")]
    return table[max(known, key=len)] if known else None


def token_prices(model: str, table: Mapping[str, tuple[float, ...]], read_on: str, source: str) -> PriceList:
    """USD per token of each quantity (input, then output) for `model`; nothing for a model the table lacks."""
    price = list_price(model, table)
    if price is None:
        return PriceList(read_on=read_on, source=f"{source} (model {model} not listed)")
    usd_per = {quantity: usd / 1e6 for quantity, usd in zip(TOKEN_QUANTITIES, price, strict=False)}
    return PriceList(usd_per, read_on, source)


def warn_if_unpriced(provider: Provider) -> None:
    """One warning at start for a model no price is known of: its calls are counted at 0 USD."""
    if not provider.price_list().usd_per and not provider.config.prices:
        log.warning("event=model_price_unknown provider=%s model=%s cost=0", provider.name, provider.model)
