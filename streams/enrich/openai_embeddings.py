"""`openai_embeddings`: one embeddings.create call per batch (up to 2,048 inputs), writing each record's vector as a
float array; any OpenAI-compatible server through `base_url`.

Billed by `input_tokens`: the call's usage, shared among the records in proportion to their text's length. A record
without text gets null and is not sent (the API refuses empty inputs). A batch the API rejects (400) is raised for the
stage to retry record by record, so only the input at fault fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import openai
from pydantic import Field

from headwater import fields
from streams.enrich import openai_connection, provider_index
from streams.enrich.base import Enriched, EnrichFailure, EnrichOutcome
from streams.enrich.model_prices import token_prices
from streams.enrich.openai_chat import PRICES_READ_ON, PRICES_SOURCE
from streams.enrich.openai_connection import OpenAIClientProvider, OpenAIConnection
from streams.enrich.pricing import PriceList

USD_PER_MILLION_TOKENS: dict[str, tuple[float, ...]] = {
    "text-embedding-3-small": (0.02,),
    "text-embedding-3-large": (0.13,),
    "text-embedding-ada-002": (0.10,),
}


class OpenAIEmbeddingsConfig(OpenAIConnection):
    text_field: str = Field(description="Dotted path of the text to embed; records without text get null.")
    output_field: str = Field("embedding", description="Field receiving the vector (an array of floats).")
    model: str = Field("text-embedding-3-small", description="Embedding model, as the server names it.")
    dimensions: int | None = Field(
        None, ge=1, description="Shorter vectors from models that support it (text-embedding-3-*); default full."
    )


class OpenAIEmbeddingsProvider(OpenAIClientProvider):
    name = "openai_embeddings"
    remote = True
    max_batch = 2048
    default_max_chars = 24_000
    """The models take 8,192 tokens per input; 24,000 characters stays under that for ordinary text."""
    config: OpenAIEmbeddingsConfig

    @property
    def model(self) -> str:
        return self.config.model if self.config.dimensions is None else f"{self.config.model}@{self.config.dimensions}"

    def input_fields(self) -> list[str]:
        return [self.config.text_field]

    def output_fields(self) -> list[str]:
        return [self.config.output_field]

    def price_list(self) -> PriceList:
        return token_prices(self.config.model, USD_PER_MILLION_TOKENS, PRICES_READ_ON, PRICES_SOURCE)

    async def enrich(self, batch: Sequence[Mapping[str, Any]]) -> list[EnrichOutcome]:
        if self._api is None:
            raise RuntimeError(f"provider {self.name} used before start()")
        path = fields.split(self.config.text_field)
        texts = [fields.get(record, path) for record in batch]
        sent = [index for index, text in enumerate(texts) if isinstance(text, str) and text.strip()]
        outcomes: list[EnrichOutcome] = [Enriched({self.config.output_field: None}) for _ in batch]
        if not sent:
            return outcomes
        extra: dict[str, Any] = {} if self.config.dimensions is None else {"dimensions": self.config.dimensions}
        try:
            async with openai_connection.mapped_errors(self.name):
                answer = await self._api.embeddings.create(
                    model=self.config.model, input=[texts[index] for index in sent], encoding_format="float", **extra
                )
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            if len(sent) > 1:
                raise  # one input spoils the whole call: the stage retries record by record, so only it fails
            outcomes[sent[0]] = EnrichFailure("BadRequest", f"{self.name} rejected the input: {exc.message}")
            return outcomes
        vectors = {item.index: item.embedding for item in answer.data}
        characters = sum(len(texts[index]) for index in sent)
        for position, index in enumerate(sent):
            share = answer.usage.prompt_tokens * len(texts[index]) / characters
            vector = vectors.get(position)
            outcomes[index] = (
                Enriched({self.config.output_field: vector}, {"input_tokens": share})
                if vector is not None
                else EnrichFailure("MissingEmbedding", f"{self.name} returned no vector for this input")
            )
        return outcomes


provider_index.register(OpenAIEmbeddingsProvider.name, OpenAIEmbeddingsConfig, OpenAIEmbeddingsProvider)
