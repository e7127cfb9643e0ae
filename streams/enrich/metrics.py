"""Prometheus metrics of enrichment (names per ARCHITECTURE.md: headwater_<part>_<what>_<unit>)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CALLS = Counter(
    "headwater_enrich_calls_total",
    "Provider calls by outcome (ok, throttled, error, timeout, unavailable); retries count once each.",
    ["pipeline", "provider", "outcome"],
)
TOKENS = Counter(
    "headwater_enrich_tokens_total",
    "Billed tokens by direction (input, output).",
    ["pipeline", "provider", "model", "direction"],
)
COST = Counter(
    "headwater_enrich_cost_usd_total",
    "Cost of enrichment calls in USD at list prices.",
    ["pipeline", "provider", "model"],
)
CACHE_HITS = Counter(
    "headwater_enrich_cache_hits_total", "Records answered from the result cache.", ["pipeline", "provider"]
)
PROVIDER_DOWN = Gauge(
    "headwater_enrich_provider_down",
    "1 while a provider fails every call and the pipeline waits for it.",
    ["pipeline", "provider"],
)
BUDGET_LIMIT = Gauge(
    "headwater_enrich_budget_limit_usd", "A step's budget per window (hour, day).", ["pipeline", "step", "window"]
)
BUDGET_SPENT = Gauge(
    "headwater_enrich_budget_spent_usd",
    "What every worker of the pipeline spent on the step in the current window, as this worker's ledger knows it.",
    ["pipeline", "step", "window"],
)
