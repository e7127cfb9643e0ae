"""Providers by name. Each provider module registers its config model and class here when it is imported; a module
is imported when its provider is first asked for, so loading a pipeline never imports the SDKs of providers it does
not use (the OpenAI and Anthropic SDKs alone take seconds to import)."""

from __future__ import annotations

import importlib
from typing import Any

from streams.enrich.base import Provider, ProviderConfig

MODULES = {
    "sentiment": "streams.enrich.sentiment",
    "language": "streams.enrich.language",
    "huggingface": "streams.enrich.huggingface",
    "mlflow": "streams.enrich.mlflow_model",
    "aws_comprehend": "streams.enrich.aws_comprehend",
    "aws_translate": "streams.enrich.aws_translate",
    "aws_rekognition": "streams.enrich.aws_rekognition",
    "aws_textract": "streams.enrich.aws_textract",
    "aws_sagemaker": "streams.enrich.aws_sagemaker",
    "openai": "streams.enrich.openai_chat",
    "openai_embeddings": "streams.enrich.openai_embeddings",
    "anthropic": "streams.enrich.anthropic_messages",
    "aws_bedrock": "streams.enrich.aws_bedrock",
}
"""The providers Headwater ships, by name, and the module of each."""

_PROVIDERS: dict[str, tuple[type[ProviderConfig], type[Provider]]] = {}


def register(name: str, config_model: type[ProviderConfig], provider: type[Provider]) -> None:
    _PROVIDERS[name] = (config_model, provider)


def names() -> list[str]:
    return sorted({*MODULES, *_PROVIDERS})


def entry(name: str) -> tuple[type[ProviderConfig], type[Provider]]:
    if name not in _PROVIDERS and name in MODULES:
        importlib.import_module(MODULES[name])
    try:
        return _PROVIDERS[name]
    except KeyError:
        raise ValueError(f"unknown enrichment provider {name!r} (known: {', '.join(names())})") from None


def config_model(name: str) -> type[ProviderConfig]:
    return entry(name)[0]


def build(name: str, options: dict[str, Any] | ProviderConfig) -> Provider:
    model, provider = entry(name)
    config = options if isinstance(options, ProviderConfig) else model.model_validate(options)
    return provider(config)
