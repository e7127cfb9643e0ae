"""Enrichment providers (one module each, registered by name) and the stage that runs them over a batch."""

from __future__ import annotations

from streams.enrich import huggingface, language, mlflow_model, sentiment
from streams.enrich.base import Enriched, EnrichFailure, EnrichOutcome, Provider, ProviderConfig, ProviderUnavailable
from streams.enrich.provider_index import build, config_model, register
from streams.enrich.stage import EnrichStage

__all__ = [
    "EnrichFailure",
    "EnrichOutcome",
    "EnrichStage",
    "Enriched",
    "Provider",
    "ProviderConfig",
    "ProviderUnavailable",
    "build",
    "config_model",
    "huggingface",
    "language",
    "mlflow_model",
    "register",
    "sentiment",
]
