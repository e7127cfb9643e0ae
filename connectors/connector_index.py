"""Connectors by name. Each connector module registers its class here; `headwater connect list` reads this."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from connectors.base import Connector

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


@dataclass(frozen=True)
class FieldDoc:
    name: str
    type: str
    required: bool
    default: str
    description: str


def _type_name(annotation: Any) -> str:
    if get_args(annotation):
        return str(annotation).replace("typing.", "").replace("pydantic.types.", "").replace("pathlib.", "")
    return str(getattr(annotation, "__name__", annotation))


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside `Model`, `list[Model]` or `Model | None`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def _fields(model: type[BaseModel], prefix: str) -> Iterator[FieldDoc]:
    for name, info in model.model_fields.items():
        default = "" if info.is_required() else repr(info.get_default(call_default_factory=True))
        full = prefix + (info.alias or name)
        yield FieldDoc(
            name=full,
            type=_type_name(info.annotation),
            required=info.is_required(),
            default=default,
            description=info.description or "",
        )
        nested = _nested_model(info.annotation)
        if nested is not None:
            marker = "[]." if get_origin(info.annotation) is list else "."
            yield from _fields(nested, full + marker)


def describe(cls: type[Connector[Any]]) -> Iterator[FieldDoc]:
    """The documented fields of a connector's config model, nested models' fields as `parent[].field`."""
    yield from _fields(cls.Config, "")
