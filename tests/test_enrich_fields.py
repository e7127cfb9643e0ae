"""Enrichment steps checked against the pipeline's schemas before anything runs: a field a provider writes must be
in the output schema (when the file loads), a field it reads must be one the records can have (once the registry
answers, against the input subject's schema)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from schemas import catalog
from streams.runtime.config import PipelineConfigError, load_pipeline
from streams.runtime.engine import PipelineEngine
from streams.runtime.enrich_fields import EnrichFieldError
from tests.pipeline_support import pipeline_file

PLAIN_TRANSFORMS = [{"op": "trim", "fields": ["notes"]}, {"op": "normalise_email", "field": "email", "to": "mail"}]


def test_a_provider_writing_a_field_the_output_schema_lacks_is_refused_naming_file_and_step(tmp_path: Path) -> None:
    path = pipeline_file(
        tmp_path, "crm.contacts.raw", enrich=[
            {"provider": "language", "options": {"text_field": "notes"}},
            {"provider": "sentiment", "options": {"text_field": "notes", "output_field": "mood_score"}},
        ],
    )
    with pytest.raises(PipelineConfigError) as refused:
        load_pipeline(path)
    assert str(refused.value) == (
        f"pipeline file {path}: field enrich.1: provider sentiment writes mood_score, which output schema "
        "crm/contact_enriched lacks"
    )


def _registry_with_raw_contacts(topic: str) -> SchemaRegistryClient:
    registry = SchemaRegistryClient.new_client({"url": "mock://enrich-fields"})
    registry.register_schema(f"{topic}-value", Schema(json.dumps(catalog.load_schema("crm/contact")), "AVRO"))
    return registry


def test_a_provider_reading_a_field_no_record_has_is_refused_once_the_input_schema_is_known(tmp_path: Path) -> None:
    topic = "crm.fieldcheck.raw"
    registry = _registry_with_raw_contacts(topic)
    reads_missing = load_pipeline(pipeline_file(
        tmp_path, topic, transform=PLAIN_TRANSFORMS, quality=None,
        enrich=[{"provider": "sentiment", "options": {"text_field": "call_transcript"}}],
    ))
    with pytest.raises(EnrichFieldError, match=(
        rf"pipeline {reads_missing.label}: field enrich.0: provider sentiment reads call_transcript, which no record "
        rf"has \(input subjects {topic}-value\)"
    )):
        PipelineEngine(reads_missing, registry)

    reads_transformed = load_pipeline(pipeline_file(
        tmp_path, topic, transform=PLAIN_TRANSFORMS, quality=None,
        enrich=[{"provider": "sentiment", "options": {"text_field": "mail"}}],
    ))
    PipelineEngine(reads_transformed, registry).close()


def test_an_unregistered_input_or_a_hook_step_leaves_the_inputs_unchecked(tmp_path: Path) -> None:
    registry = SchemaRegistryClient.new_client({"url": "mock://enrich-fields-empty"})
    enrich = [{"provider": "sentiment", "options": {"text_field": "call_transcript"}}]
    unregistered = load_pipeline(pipeline_file(tmp_path, "crm.nobody.raw", transform=PLAIN_TRANSFORMS, enrich=enrich))
    PipelineEngine(unregistered, registry).close()
    hooked = load_pipeline(pipeline_file(tmp_path, "crm.fieldcheck.raw", enrich=enrich))
    PipelineEngine(hooked, _registry_with_raw_contacts("crm.fieldcheck.raw")).close()
