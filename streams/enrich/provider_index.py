"""Providers by name: each provider module registers its config model and class here."""

from __future__ import annotations

from typing import Any

from streams.enrich.base import Provider, ProviderConfig

_PROVIDERS: dict[str, tuple[type[ProviderConfig], type[Provider]]] = {}


def register(name: str, config_model: type[ProviderConfig], provider: type[Provider]) -> None:
    _PROVIDERS[name] = (config_model, provider)


def names() -> list[str]:
    return sorted(_PROVIDERS)


def entry(name: str) -> tuple[type[ProviderConfig], type[Provider]]:
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
