"""The enrichment provider interface: a provider says how to call its service and read the answer; the stage
(`stage.py`) owns everything around the call (batching, concurrency, rate limits, retries, timeouts, input bounds,
redaction, cache, cost, budgets).

A provider gets a batch of at most `config.batch_size` records and returns, in order, an `Enriched` (fields to add,
what the record was billed by) or an `EnrichFailure` (that record's own problem: refused content, an answer that
stays invalid) for each. For the service as a whole it raises instead:
- `Throttled` (HTTP 429, `ThrottlingException`, Anthropic's 529): retried after Retry-After or backoff;
- `TransientError` (5xx, a connection error): retried with backoff, then an outage;
- `ProviderUnavailable`: an outage at once (the pipeline pauses; nothing is dead-lettered for it).
Local models run in a child process (`local_model.LocalModelProvider`), which a stuck call kills and replaces.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from headwater import fields
from streams.enrich.budget_config import BudgetConfig
from streams.enrich.pricing import FREE, PriceList

T = TypeVar("T")

PiiKind = Literal["email", "phone", "credit_card", "iban", "ip_address", "us_ssn", "url"]


@dataclass(frozen=True)
class Enriched:
    """Fields a provider adds to one record, and what the record was billed by (`{"input_tokens": 120,
    "output_tokens": 30}`, `{"units": 3}`, `{"characters": 512}`, `{"calls": 1}`, `{"pages": 2}`: the quantity names
    of the provider's `PriceList`); a call billed once for several records splits its quantities among them."""

    fields: dict[str, Any]
    billed: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EnrichFailure:
    """Why a provider could not enrich one record (a dead letter with stage `enrich`); `unreachable` when it looked
    like the provider's fault (a timeout or a connection error), which, for every record of a step, means the
    provider is down."""

    error_class: str
    message: str
    unreachable: bool = False


EnrichOutcome = Enriched | EnrichFailure


class ProviderUnavailable(RuntimeError):
    """The provider as a whole does not answer (outage, not one record's fault): the batch waits and is retried."""

    def __init__(self, provider: str, reason: str) -> None:
        super().__init__(f"provider {provider} unavailable: {reason}")
        self.provider = provider


class Throttled(Exception):
    """The service asked us to slow down; `retry_after` seconds when it said how long."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class TransientError(Exception):
    """A call failed for a reason that may pass (a 5xx answer, a dropped connection): retried with backoff."""


class ProviderStartError(RuntimeError):
    """A provider cannot start (missing credentials, an unreachable endpoint, a model that does not load): one line,
    before anything is consumed."""


class ProviderConfig(BaseModel):
    """Limits every provider honours; each provider's own options extend this model."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(256, ge=1, description="Records per provider call (capped at the service's own limit).")
    concurrency: int = Field(2, ge=1, description="Provider calls in flight at once.")
    timeout_seconds: float = Field(10.0, gt=0, description="Deadline of one provider call.")
    max_attempts: int = Field(4, ge=1, le=20, description="Tries of one call before a throttle or 5xx is an outage.")
    requests_per_minute: float | None = Field(None, gt=0, description="Most calls per minute (all workers' share).")
    tokens_per_minute: float | None = Field(None, gt=0, description="Most input tokens per minute, estimated.")
    max_chars: int | None = Field(
        None, ge=1, description="Longest input text per field; default the provider's own, within its timeout."
    )
    on_too_long: Literal["truncate", "dead_letter"] = Field(
        "truncate", description="A text over `max_chars`: cut to it, or dead-letter the record."
    )
    cache: bool | None = Field(
        None,
        description="Answer repeated inputs from the result cache instead of calling (default: on for third-party "
        "services, off for local models, whose answers cost less than a lookup).",
    )
    prices: dict[str, float] | None = Field(
        None, description="USD per billed unit, by quantity (`input_tokens`, `units`...): overrides the list prices."
    )
    redact: list[PiiKind] = Field(
        default_factory=list, description="PII kinds replaced by typed placeholders in what a third party is sent."
    )
    budget: BudgetConfig | None = Field(
        None, description="Most USD this step may spend per hour or day, all workers of the pipeline together."
    )


class Provider(ABC):
    """One enrichment provider instance, built from its config by the provider index."""

    name: ClassVar[str]
    remote: ClassVar[bool] = False
    """A third-party service: `redact` applies to what it is sent."""
    max_batch: ClassVar[int] = 10_000
    """The service's own limit of records per call; `batch_size` is capped at it."""
    default_max_chars: ClassVar[int] = 100_000
    """The input bound when the config sets none: long enough for real texts, short enough for the timeout."""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config

    @property
    @abstractmethod
    def model(self) -> str:
        """The model (and version) this provider answers with, for lineage and pricing."""

    @abstractmethod
    def input_fields(self) -> list[str]:
        """Dotted paths of the record fields the provider reads (bounded, redacted and hashed for the cache)."""

    def text_fields(self) -> list[str]:
        """The input fields that are text, which `max_chars` bounds and `redact` rewrites (not references or bytes)."""
        return self.input_fields()

    @abstractmethod
    def output_fields(self) -> list[str]:
        """Fields the provider writes; each must be in the pipeline's output schema."""

    def uses_cache(self) -> bool:
        """Whether the result cache answers for this provider: as configured, else for third-party services."""
        return self.config.cache if self.config.cache is not None else self.remote

    def batch_limit(self) -> int:
        """Records per call: `batch_size` capped at the service's limit (override when the limit depends on the
        options, e.g. an operation that takes one document per call)."""
        return min(self.config.batch_size, self.max_batch)

    def price_list(self) -> PriceList:
        """What this provider's model costs per billed unit (the public list prices, with the date they were read)."""
        return FREE

    def estimate_tokens(self, batch: Sequence[Mapping[str, Any]]) -> int:
        """Input tokens a call for `batch` will use, for `tokens_per_minute` (about four characters a token)."""
        paths = [fields.split(path) for path in self.input_fields()]
        return sum(len(str(fields.get(record, path) or "")) for record in batch for path in paths) // 4 + 1

    async def start(self) -> None:
        """Check what can be checked before consuming (credentials, endpoint, model); raise `ProviderStartError`.
        Local providers have nothing to check."""
        return None

    async def close(self) -> None:
        """Release clients and workers (local providers hold none)."""
        return None

    @abstractmethod
    async def enrich(self, batch: Sequence[Mapping[str, Any]]) -> list[EnrichOutcome]:
        """One outcome per record of the batch, in order."""
