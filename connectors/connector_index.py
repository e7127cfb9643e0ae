"""Connectors by name. Each connector module registers its class here; `headwater connect list` reads this."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

from connectors.base import Connector
from headwater.model_docs import FieldDoc, model_fields

_MODULES = (
    "connectors.sources.salesforce",
    "connectors.sources.hubspot",
    "connectors.sources.webhook",
    "connectors.sources.sql",
    "connectors.sinks.postgres",
    "connectors.sinks.duckdb",
    "connectors.sinks.s3",
)

_REGISTRY: dict[str, type[Connector[Any]]] = {}


def register(name: str) -> Any:
    """Class decorator: make a connector available under `name` in config files."""

    def decorate(cls: type[Connector[Any]]) -> type[Connector[Any]]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"connector name {name!r} is registered twice")
        _REGISTRY[name] = cls
        return cls

    return decorate


def _load_all() -> None:
    for module in _MODULES:
        importlib.import_module(module)


def available() -> dict[str, type[Connector[Any]]]:
    _load_all()
    return dict(sorted(_REGISTRY.items()))


class UnknownConnectorError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def lookup(name: str) -> type[Connector[Any]]:
    found = available().get(name)
    if found is None:
        raise UnknownConnectorError(f"unknown connector {name!r} (available: {', '.join(available())})")
    return found


def describe(cls: type[Connector[Any]]) -> Iterator[FieldDoc]:
    """The documented fields of a connector's config model, nested models' fields as `parent[].field`."""
    yield from model_fields(cls.Config)
