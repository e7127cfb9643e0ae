"""Pipeline definitions: YAML files loaded into pydantic models, rejected before anything starts when invalid."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

import quality
from headwater.oversized import ClaimCheckConfig
from quality.suite import SuiteError, load_suite
from schemas import catalog
from streams.enrich import config_model
from streams.enrich.base import ProviderConfig
from streams.runtime.enrich_fields import EnrichFieldError, check_outputs, providers_of, schema_field_names
from streams.transforms import TransformStep

SUITES_DIR = Path(quality.__file__).parent / "suites"
_TOPIC = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_-]+)+$")


class PipelineConfigError(ValueError):
    """A pipeline file that cannot be used; the message names the file and the field."""


def _check_topic(value: str) -> str:
    if not _TOPIC.match(value):
        raise ValueError(f"{value!r} is not a topic name of the form <domain>.<entity>.<stage>")
    return value


class SchemaRef(BaseModel):
    """An Avro schema: a catalog name (`crm/contact_enriched`) or a path to an `.avsc` file."""

    model_config = ConfigDict(extra="forbid")

    schema_: str = Field(alias="schema", description="Catalog name or `.avsc` path (relative to the pipeline file).")
    subject: str | None = Field(None, description="Registry subject; default `<topic>-value`.")


class InputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topics: list[str] = Field(min_length=1, description="Raw topics to read (Confluent-wire Avro).")
    reader_schema: str | None = Field(
        None, description="Optional catalog name or `.avsc` path to resolve every writer schema to."
    )

    @field_validator("topics")
    @classmethod
    def _topics(cls, value: list[str]) -> list[str]:
        return [_check_topic(topic) for topic in value]


class OutputConfig(SchemaRef):
    topic: str = Field(description="Topic receiving the enriched records.")

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        return _check_topic(value)


class EnrichStep(BaseModel):
    """One provider by name with its options (validated against the provider's own config model)."""

    model_config = ConfigDict(extra="forbid")

    provider: str = Field(description="Registered provider name, e.g. `sentiment`, `language`.")
    options: dict[str, Any] = Field(default_factory=dict, description="The provider's options.")

    @model_validator(mode="after")
    def _options_valid(self) -> EnrichStep:
        config_model(self.provider).model_validate(self.options)
        return self

    def config(self) -> ProviderConfig:
        return config_model(self.provider).model_validate(self.options)


class QualityWindow(BaseModel):
    """A tumbling window across micro-batches for the aggregate expectations: N records or S seconds."""

    model_config = ConfigDict(extra="forbid")

    records: int | None = Field(None, ge=1, le=1_000_000, description="Close a window every N records.")
    seconds: float | None = Field(None, gt=0, le=7 * 86_400, description="Windows of S seconds of record time.")

    @model_validator(mode="after")
    def _one_size(self) -> QualityWindow:
        if (self.records is None) == (self.seconds is None):
            raise ValueError("a window is either records: N or seconds: S")
        return self


_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class QualityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    suite: str = Field(
        description="A suite shipped in `quality/suites` by name (`crm_contacts`), or a path to a GX suite JSON file."
    )
    window: QualityWindow | None = Field(None, description="Required when the suite has aggregate expectations.")
    on_fail: Literal["continue", "pause"] = Field(
        "continue", description="When a window fails an error-severity expectation: report and continue, or pause "
                                "consumption until `headwater quality resume PIPELINE`.",
    )
    unique_within: str = Field("7d", description="Horizon of uniqueness expectations: 30s, 15m, 12h, 7d.")

    @field_validator("unique_within")
    @classmethod
    def _horizon(cls, value: str) -> str:
        if not _DURATION.match(value):
            raise ValueError(f"{value!r} is not a duration such as 30s, 15m, 12h or 7d")
        return value

    @property
    def horizon_ms(self) -> int:
        found = _DURATION.match(self.unique_within)
        assert found is not None
        return int(found.group(1)) * _UNIT_MS[found.group(2)]


class BatchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(2000, ge=1, le=100_000, description="Most records per micro-batch.")
    linger_ms: int = Field(50, ge=0, le=60_000, description="Longest wait for a micro-batch to fill.")


class DeadLettersConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    claim_check: ClaimCheckConfig | None = Field(
        None, description="S3 location for the whole original of a dead letter too large for its topic."
    )


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Pipeline name (lower case, underscores).")
    version: str = Field("1", description="Pipeline version, written to `hw-pipeline` as name@version.")
    input: InputConfig
    output: OutputConfig
    dead_letter_topic: str | None = Field(None, description="Default `<domain>.<entity>.dlq` of the first input.")
    dead_letters: DeadLettersConfig = Field(default_factory=lambda: DeadLettersConfig.model_validate({}))
    transform: list[TransformStep] = Field(default_factory=list, description="Declarative steps, in order.")
    enrich: list[EnrichStep] = Field(default_factory=list, description="Enrichment providers, in order.")
    quality: QualityConfig | None = None
    batch: BatchConfig = Field(default_factory=lambda: BatchConfig.model_validate({}))
    consumer_group: str | None = Field(None, description="Kafka consumer group; default `headwater.<name>`.")
    base_dir: Path = Field(Path("."), exclude=True, description="Directory relative paths are resolved against.")

    @model_validator(mode="after")
    def _defaults(self) -> PipelineConfig:
        if self.dead_letter_topic is None:
            domain, entity = self.input.topics[0].split(".")[:2]
            self.dead_letter_topic = f"{domain}.{entity}.dlq"
        _check_topic(self.dead_letter_topic)
        return self

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def group(self) -> str:
        return self.consumer_group or f"headwater.{self.name}"

    @property
    def dlq_topic(self) -> str:
        assert self.dead_letter_topic is not None
        return self.dead_letter_topic

    @property
    def output_subject(self) -> str:
        return self.output.subject or f"{self.output.topic}-value"

    def resolve(self, reference: str) -> Path:
        path = Path(reference)
        return path if path.is_absolute() or path.exists() else self.base_dir / path

    def suite_path(self) -> Path | None:
        if self.quality is None:
            return None
        suite = self.quality.suite
        if "/" not in suite and not suite.endswith(".json"):
            return SUITES_DIR / f"{suite}.json"
        return self.resolve(suite)

    def load_schema(self, reference: str) -> dict[str, Any]:
        if reference.endswith(".avsc"):
            loaded: dict[str, Any] = json.loads(self.resolve(reference).read_text(encoding="utf-8"))
            return loaded
        return catalog.load_schema(reference)


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"field {location}: {first['msg']}{more}"


def load_pipeline(path: Path) -> PipelineConfig:
    """Parse and check one pipeline file, including that its schemas and suite exist."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PipelineConfigError(f"pipeline file {path}: cannot read it: {exc}") from exc
    except yaml.YAMLError as exc:
        raise PipelineConfigError(f"pipeline file {path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise PipelineConfigError(f"pipeline file {path}: expected a mapping at the top level")
    try:
        config = PipelineConfig.model_validate({**raw, "base_dir": path.parent})
    except ValidationError as exc:
        raise PipelineConfigError(f"pipeline file {path}: {_describe(exc)}") from exc
    references = [("output.schema", config.output.schema_)]
    if config.input.reader_schema:
        references.append(("input.reader_schema", config.input.reader_schema))
    for field_path, reference in references:
        try:
            config.load_schema(reference)
        except (OSError, KeyError, ValueError) as exc:
            raise PipelineConfigError(f"pipeline file {path}: field {field_path}: {exc}") from exc
    try:
        check_outputs(
            providers_of(config.enrich), schema_field_names(config.load_schema(config.output.schema_)),
            config.output.schema_,
        )
    except EnrichFieldError as exc:
        raise PipelineConfigError(f"pipeline file {path}: {exc}") from None
    suite = config.suite_path()
    if config.quality and suite is not None:
        if not suite.is_file():
            raise PipelineConfigError(
                f"pipeline file {path}: field quality.suite: {config.quality.suite} does not exist"
            )
        _check_suite(config, config.quality, suite, path)
    return config


def _check_suite(config: PipelineConfig, settings: QualityConfig, suite_path: Path, path: Path) -> None:
    """The suite's types, severities and kwargs, its columns against the output schema, a window for aggregates."""
    try:
        suite = load_suite(suite_path)
        suite.check_columns(schema_field_names(config.load_schema(config.output.schema_)), config.output.schema_)
        suite.check_window(settings.window is not None)
    except SuiteError as exc:
        raise PipelineConfigError(f"pipeline file {path}: field quality.suite: {exc}") from None
