"""Prompts over record fields and structured answers, shared by the chat providers (OpenAI, Anthropic, Bedrock).

A prompt template names record fields (`{notes}`, `{mailing_address.city}`; `{{` and `}}` are literal braces);
declared `outputs` become the JSON schema the model answers in and the answer is validated against it. With
`pack: N`, N records go into one prompt as `<record index="i">` sections and the model answers
`{"items": [{"index": i, ...outputs}]}`; each item is checked on its own, so a missing or invalid item fails only its
record, and a packed prompt refused or rejected as a whole is raised (`PackRejected`) for the stage to retry its
records one by one. An answer that fails validation is asked again once, quoting the error; still invalid, it is the
record's `InvalidStructuredOutput`. A refusal is the record's `Refused`.

A provider supplies a `Chat` (how to ask its service and read the reply); `StructuredPrompt.run` does the rest.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from string import Formatter
from typing import Any, Literal, Protocol

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from headwater import fields
from streams.enrich.base import Enriched, EnrichFailure, EnrichOutcome, Provider, ProviderConfig

_QUOTED_ERROR_CHARS = 400
PACK_INSTRUCTION = (
    'Each <record index="i"> section below is one task. Answer with a JSON object {"items": [...]} holding one '
    'item per record, each with that record\'s "index" and its answer.'
)
CORRECTION = "Your answer does not match the required JSON schema: {error}. Answer again, matching the schema exactly."


class OutputSpec(BaseModel):
    """One declared output: a small subset of JSON schema (string, integer, number, boolean, array of strings)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["string", "integer", "number", "boolean", "array"] = Field(
        description="JSON type of the value; `array` is an array of strings."
    )
    description: str | None = Field(None, description="What the value means, sent to the model in the schema.")
    enum: list[str | int] | None = Field(None, min_length=1, description="The only values allowed (string/integer).")
    minimum: float | None = Field(None, description="Smallest allowed value (integer/number).")
    maximum: float | None = Field(None, description="Largest allowed value (integer/number).")

    @model_validator(mode="after")
    def _consistent(self) -> OutputSpec:
        if self.enum is not None and self.type not in ("string", "integer"):
            raise ValueError(f"enum applies to string or integer outputs, not {self.type}")
        bounded = self.minimum is not None or self.maximum is not None
        if bounded and self.type not in ("integer", "number"):
            raise ValueError(f"minimum/maximum apply to integer or number outputs, not {self.type}")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"minimum {self.minimum} is above maximum {self.maximum}")
        return self

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": self.type}
        if self.type == "array":
            schema["items"] = {"type": "string"}
        if self.description:
            schema["description"] = self.description
        if self.enum is not None:
            schema["enum"] = list(self.enum)
        for bound in ("minimum", "maximum"):
            value = getattr(self, bound)
            if value is not None:
                schema[bound] = int(value) if self.type == "integer" and float(value).is_integer() else value
        return schema


def _placeholders(template: str) -> list[str]:
    """Field paths a template names, in order of first use; a placeholder that is not a plain dotted field name
    (`{}`, `{0}`, `{notes!r}`, `{amount:.2f}`, `{items[0]}`) is refused."""
    names: list[str] = []
    for _, name, spec, conversion in Formatter().parse(template):
        if name is None:
            continue
        parts = name.split(".")
        if spec or conversion or not all(part.isidentifier() for part in parts):
            raise ValueError(f"placeholder {{{name}}} must be a field name or dotted path, like {{notes}}")
        if name not in names:
            names.append(name)
    return names


def template_fields(template: str) -> list[str]:
    """The dotted record fields a prompt template names (`{notes}`, `{mailing_address.city}`)."""
    return _placeholders(template)


def render(template: str, record: Mapping[str, Any]) -> str:
    """The template with each placeholder replaced by the record's value (empty when null or missing)."""
    parts: list[str] = []
    for literal, name, _, _ in Formatter().parse(template):
        parts.append(literal)
        if name is not None:
            value = fields.get(record, fields.split(name))
            parts.append("" if value is None else value if isinstance(value, str) else json.dumps(value, default=str))
    return "".join(parts)


class ChatPromptConfig(ProviderConfig):
    """What every chat provider is asked: the prompt over record fields and the outputs it must answer with."""

    prompt: str = Field(description="Prompt template over record fields: `{notes}`, `{mailing_address.city}`.")
    outputs: dict[str, OutputSpec] = Field(
        min_length=1, description="Fields the model answers, each written to the record under its name."
    )
    system: str | None = Field(None, description="System prompt: the task's standing instructions.")
    pack: int | None = Field(
        None, ge=2, le=100, description="Records packed into one prompt, answered as per-record items."
    )

    @field_validator("prompt")
    @classmethod
    def _valid_template(cls, value: str) -> str:
        if not _placeholders(value):
            raise ValueError("the prompt names no record field (use {field} or {dotted.path})")
        return value

    @field_validator("outputs")
    @classmethod
    def _plain_names(cls, value: dict[str, OutputSpec]) -> dict[str, OutputSpec]:
        for name in value:
            if not name.isidentifier() or name == "index":
                raise ValueError(f"output {name!r} must be an identifier other than 'index'")
        return value


class PackRejected(Exception):
    """The service refused or rejected a packed prompt as a whole: raised for the stage to retry the records one by
    one, so only the record at fault fails."""

    def __init__(self, failure: EnrichFailure) -> None:
        super().__init__(f"{failure.error_class}: {failure.message}")
        self.failure = failure


@dataclass(frozen=True)
class Reply:
    """What a chat service answered: the parsed answer (or why there is none), or a failure of the records asked
    (a refusal, a request the service rejected), the quantities billed, and the provider's own record of the turn
    so a correction can continue the conversation."""

    answer: Any = None
    problem: str | None = None
    failure: EnrichFailure | None = None
    billed: Mapping[str, float] = field(default_factory=dict)
    turn: Any = None


class Chat(Protocol):
    """How a provider asks its service for a structured answer; raises `Throttled`/`TransientError`/
    `ProviderUnavailable` for the service as a whole."""

    async def ask(self, prompt: str, schema: Mapping[str, Any]) -> Reply: ...

    async def correct(self, prompt: str, schema: Mapping[str, Any], previous: Reply, correction: str) -> Reply:
        """Ask again after `previous`, telling the model what was wrong with it."""
        ...


def _object_schema(properties: Mapping[str, Any]) -> dict[str, Any]:
    properties = dict(properties)
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def _problem(validator: Draft202012Validator, instance: Any) -> str | None:
    error = best_match(validator.iter_errors(instance))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path)
    return f"{where + ': ' if where else ''}{error.message}"[:_QUOTED_ERROR_CHARS]


def _sum(*billed: Mapping[str, float]) -> dict[str, float]:
    total: dict[str, float] = {}
    for quantities in billed:
        for quantity, amount in quantities.items():
            total[quantity] = total.get(quantity, 0.0) + amount
    return total


class StructuredPrompt:
    """A chat provider's prompt, schema and validation, from its `ChatPromptConfig`."""

    def __init__(self, config: ChatPromptConfig) -> None:
        self.config = config
        outputs = {name: spec.json_schema() for name, spec in config.outputs.items()}
        self.item_schema = _object_schema(outputs)
        packed_item = _object_schema({"index": {"type": "integer"}, **outputs})
        self.packed_schema = _object_schema({"items": {"type": "array", "items": packed_item}})
        self._item = Draft202012Validator(self.item_schema)
        self._packed_item = Draft202012Validator(packed_item)
        self._envelope = Draft202012Validator(_object_schema({"items": {"type": "array"}}))

    def input_fields(self) -> list[str]:
        return template_fields(self.config.prompt)

    def output_fields(self) -> list[str]:
        return list(self.config.outputs)

    def batch_limit(self) -> int:
        """Records per call: the pack size, else one."""
        return min(self.config.batch_size, self.config.pack or 1)

    def packed_prompt(self, batch: Sequence[Mapping[str, Any]]) -> str:
        sections = [
            f'<record index="{index}">\n{render(self.config.prompt, record)}\n</record>'
            for index, record in enumerate(batch)
        ]
        return "\n".join([PACK_INSTRUCTION, *sections])

    async def run(self, batch: Sequence[Mapping[str, Any]], chat: Chat) -> list[EnrichOutcome]:
        if self.config.pack:
            return await self._packed(batch, chat)
        return list(await asyncio.gather(*(self._single(record, chat) for record in batch)))

    def _fields(self, answer: Mapping[str, Any]) -> dict[str, Any]:
        return {name: answer[name] for name in self.config.outputs}

    def _check(self, reply: Reply) -> str | None:
        return reply.problem or _problem(self._item, reply.answer)

    async def _single(self, record: Mapping[str, Any], chat: Chat) -> EnrichOutcome:
        prompt = render(self.config.prompt, record)
        reply = await chat.ask(prompt, self.item_schema)
        if reply.failure:
            return reply.failure
        problem = self._check(reply)
        billed = dict(reply.billed)
        if problem:
            reply = await chat.correct(prompt, self.item_schema, reply, CORRECTION.format(error=problem))
            billed = _sum(billed, reply.billed)
            if reply.failure:
                return reply.failure
            problem = self._check(reply)
            if problem:
                return EnrichFailure("InvalidStructuredOutput", f"answer still invalid after one correction: {problem}")
        return Enriched(self._fields(reply.answer), billed)

    def _items(self, reply: Reply, wanted: Sequence[int]) -> tuple[dict[int, dict[str, Any]], dict[int, str]]:
        """The valid items of a packed answer by index, and the problem of each wanted index without one."""
        problem = reply.problem or _problem(self._envelope, reply.answer)
        if problem:
            return {}, dict.fromkeys(wanted, problem)
        found: dict[int, Any] = {}
        for item in reply.answer["items"]:
            index = item.get("index") if isinstance(item, dict) else None
            if isinstance(index, int) and index in wanted and index not in found:
                found[index] = item
        valid: dict[int, dict[str, Any]] = {}
        problems: dict[int, str] = {}
        for index in wanted:
            if index not in found:
                problems[index] = f"no item with index {index}"
            elif item_problem := _problem(self._packed_item, found[index]):
                problems[index] = f"item {index}: {item_problem}"
            else:
                valid[index] = self._fields(found[index])
        return valid, problems

    async def _packed(self, batch: Sequence[Mapping[str, Any]], chat: Chat) -> list[EnrichOutcome]:
        prompt = self.packed_prompt(batch)
        reply = await chat.ask(prompt, self.packed_schema)
        if reply.failure:
            if len(batch) > 1:
                raise PackRejected(reply.failure)
            return [reply.failure]
        billed = dict(reply.billed)
        valid, problems = self._items(reply, range(len(batch)))
        failures: dict[int, EnrichFailure] = {}
        if problems:
            correction = CORRECTION.format(error="; ".join(problems.values()))
            again = await chat.correct(prompt, self.packed_schema, reply, correction)
            billed = _sum(billed, again.billed)
            if again.failure:
                failures = dict.fromkeys(problems, again.failure)
            else:
                corrected, still = self._items(again, sorted(problems))
                valid.update(corrected)
                failures = {
                    index: EnrichFailure("InvalidStructuredOutput", f"answer still invalid after one correction: {why}")
                    for index, why in still.items()
                }
        share = {quantity: amount / len(batch) for quantity, amount in billed.items()}
        return [failures[index] if index in failures else Enriched(valid[index], share) for index in range(len(batch))]


class PromptedProvider(Provider):
    """A chat provider: what it reads, writes and packs into one call comes from its prompt."""

    config: ChatPromptConfig

    def __init__(self, config: ChatPromptConfig) -> None:
        super().__init__(config)
        self.prompt = StructuredPrompt(config)

    def input_fields(self) -> list[str]:
        return self.prompt.input_fields()

    def output_fields(self) -> list[str]:
        return self.prompt.output_fields()

    def batch_limit(self) -> int:
        return self.prompt.batch_limit()
