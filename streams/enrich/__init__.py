"""Enrichment providers (one module each, registered by name) and the stage that runs them over a batch."""

from __future__ import annotations

from streams.enrich import (
    anthropic_messages,
    aws_bedrock,
    aws_comprehend,
    aws_rekognition,
    aws_sagemaker,
    aws_textract,
    aws_translate,
    language,
    openai_chat,
    openai_embeddings,
    sentiment,
)
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
    "anthropic_messages",
    "aws_bedrock",
    "aws_comprehend",
    "aws_rekognition",
    "aws_sagemaker",
    "aws_textract",
    "aws_translate",
    "build",
    "config_model",
    "language",
    "openai_chat",
    "openai_embeddings",
    "register",
    "sentiment",
]
