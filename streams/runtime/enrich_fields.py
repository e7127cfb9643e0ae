"""A pipeline's enrichment steps checked against its schemas before anything runs: every field a provider writes
must be in the output schema (checked when the file loads), and every field it reads (a prompt's `{field}`, a text
or image field) must be one the record can have: in the input subject's schema, the output schema, written by a
transform or an earlier provider (checked once the registry answers). A pipeline with a `hook` step is not checked
for inputs, since a hook may write any field."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from streams.enrich import build
from streams.enrich.base import Provider


class EnrichFieldError(ValueError):
    """A provider reads or writes a field the pipeline's records cannot have."""


def _top_level(paths: Iterable[str]) -> set[str]:
    return {path.split(".")[0] for path in paths}


def schema_field_names(schema: Any) -> set[str]:
    """Top-level field names of an Avro record schema (parsed JSON or its text)."""
    parsed = json.loads(schema) if isinstance(schema, str) else schema
    return {spec["name"] for spec in parsed.get("fields", [])} if isinstance(parsed, dict) else set()


def providers_of(steps: Sequence[Any]) -> list[Provider]:
    return [build(step.provider, step.config()) for step in steps]


def check_outputs(providers: Sequence[Provider], output_fields: set[str], schema_name: str) -> None:
    for index, provider in enumerate(providers):
        missing = sorted(_top_level(provider.output_fields()) - output_fields)
        if missing:
            raise EnrichFieldError(
                f"field enrich.{index}: provider {provider.name} writes {', '.join(missing)}, which output schema "
                f"{schema_name} lacks"
            )


def check_inputs(
    providers: Sequence[Provider], known: set[str], transform_targets: set[str], where: str
) -> None:
    available = known | transform_targets
    for index, provider in enumerate(providers):
        missing = sorted(_top_level(provider.input_fields()) - available)
        if missing:
            raise EnrichFieldError(
                f"field enrich.{index}: provider {provider.name} reads {', '.join(missing)}, which no record has "
                f"({where})"
            )
        available |= _top_level(provider.output_fields())
