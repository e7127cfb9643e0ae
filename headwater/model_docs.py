"""The documentation of a pydantic config model, field by field: what `connect list` and `enrich list` print."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from pydantic import BaseModel


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


def model_fields(model: type[BaseModel], prefix: str = "") -> Iterator[FieldDoc]:
    """Every field of a pydantic config model with its type, default and description; nested models' fields as
    `parent.field` (`parent[].field` in lists)."""
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
            yield from model_fields(nested, full + marker)
