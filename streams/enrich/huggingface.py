"""A local Hugging Face model from a directory (never downloaded): model2vec static embeddings, or a model2vec
classifier (`StaticModelPipeline`: the static model plus its `head.safetensors`, numpy only), batched on CPU in a
child process (`local_worker`) so a call past its deadline is killed with its process.

transformers and sentence-transformers models are not supported: they need torch, which Headwater does not install;
distil one into a model2vec model (`model2vec.distill`) to run it here."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from headwater import fields
from streams.enrich import provider_index
from streams.enrich.base import Enriched, EnrichOutcome, ProviderStartError
from streams.enrich.local_model import LocalModelConfig, LocalModelProvider
from streams.enrich.local_worker import ModelFactory

if TYPE_CHECKING:
    from model2vec import StaticModel
    from model2vec.inference import StaticModelPipeline


class HuggingFaceConfig(LocalModelConfig):
    model_path: Path = Field(
        description="Local directory of a model2vec model (`config.json`, `model.safetensors`, `tokenizer.json`; "
        "plus `head.safetensors` for classification). Nothing is ever downloaded: HF_HUB_OFFLINE=1 in the model "
        "process, and a path that is not a directory is refused at start."
    )
    task: Literal["embeddings", "classification"] = Field(
        description="`embeddings`: the text's vector; `classification`: the most likely label of the model's head."
    )
    backend: Literal["model2vec"] = Field(
        "model2vec", description="Model format; model2vec static models (transformers models need torch)."
    )
    text_field: str = Field(description="Dotted path of the text; records without text get null outputs.")
    output_field: str = Field(
        "", description="Field receiving the float list (embeddings; default `embedding`) or the label "
        "(classification; default `label`)."
    )
    score_field: str | None = Field(
        None, description="Classification only: field receiving the label's probability (0 to 1); none if unset."
    )

    @model_validator(mode="after")
    def _fields_of_the_task(self) -> HuggingFaceConfig:
        if self.score_field and self.task != "classification":
            raise ValueError("score_field is for task classification (embeddings have no score)")
        if not self.output_field:
            self.output_field = "embedding" if self.task == "embeddings" else "label"
        return self


def _texts(texts: list[Any]) -> tuple[list[int], list[str]]:
    """Positions and values of the texts worth encoding (non-empty strings)."""
    present = [index for index, text in enumerate(texts) if isinstance(text, str) and text.strip()]
    return present, [texts[index] for index in present]


class Model2VecEmbedder:
    """The child's model for `embeddings`: a list of texts to a list of float lists (null for no text)."""

    def __init__(self, model_path: Path) -> None:
        from model2vec import StaticModel  # imported in the model process only: the pipeline's process never needs it

        self.model: StaticModel = StaticModel.from_pretrained(model_path)

    def __call__(self, texts: list[Any]) -> list[list[float] | None]:
        present, values = _texts(texts)
        vectors: list[list[float] | None] = [None] * len(texts)
        if values:
            # one process per provider already: model2vec's own multiprocessing would only compete for the cores
            encoded = self.model.encode(values, use_multiprocessing=False)
            for index, vector in zip(present, encoded, strict=True):
                vectors[index] = [float(value) for value in vector]
        return vectors


class Model2VecClassifier:
    """The child's model for `classification`: a list of texts to (label, probability) pairs (null for no text)."""

    def __init__(self, model_path: Path) -> None:
        from model2vec.inference import StaticModelPipeline  # the model process only, as above
        from model2vec.inference.mlp import Activation

        self.pipeline: StaticModelPipeline = StaticModelPipeline.from_pretrained(model_path)
        if self.pipeline.head.activation is not Activation.SOFTMAX or self.pipeline.classes_ is None:
            raise ValueError(
                f"{model_path} has a {self.pipeline.head.activation.value} head; classification needs a single-label "
                "(softmax) classifier"
            )
        self.classes = [str(label) for label in self.pipeline.classes_]

    def __call__(self, texts: list[Any]) -> list[tuple[str, float] | None]:
        present, values = _texts(texts)
        labels: list[tuple[str, float] | None] = [None] * len(texts)
        if values:
            probabilities = self.pipeline.predict_proba(values, use_multiprocessing=False)
            for index, row in zip(present, probabilities, strict=True):
                best = int(row.argmax())
                labels[index] = (self.classes[best], round(float(row[best]), 6))
        return labels


class HuggingFaceProvider(LocalModelProvider):
    name = "huggingface"
    config: HuggingFaceConfig

    def model_factory(self) -> ModelFactory:
        model = Model2VecEmbedder if self.config.task == "embeddings" else Model2VecClassifier
        return partial(model, self.config.model_path)

    @cached_property
    def model(self) -> str:
        """The directory's name and a fingerprint of its files, so a model replaced in place is a new model (and
        misses the cache)."""
        path = self.config.model_path
        files = sorted(path.iterdir()) if path.is_dir() else []
        stamp = hashlib.sha256(repr([(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]).encode())
        return f"model2vec/{path.name}@{stamp.hexdigest()[:12]}"

    def input_fields(self) -> list[str]:
        return [self.config.text_field]

    def output_fields(self) -> list[str]:
        if self.config.task == "classification" and self.config.score_field:
            return [self.config.output_field, self.config.score_field]
        return [self.config.output_field]

    async def start(self) -> None:
        if not self.config.model_path.is_dir():
            raise ProviderStartError(
                f"provider {self.name}: model_path {self.config.model_path} is not a directory (models are never "
                "downloaded: point it at a local model directory)"
            )
        await super().start()

    def payload(self, batch: Sequence[Mapping[str, Any]]) -> list[Any]:
        path = fields.split(self.config.text_field)
        return [fields.get(record, path) for record in batch]

    def outcomes(self, batch: Sequence[Mapping[str, Any]], answer: list[Any]) -> list[EnrichOutcome]:
        if self.config.task == "embeddings":
            return [Enriched({self.config.output_field: vector}) for vector in answer]
        return [Enriched(self._label_fields(label)) for label in answer]

    def _label_fields(self, answer: tuple[str, float] | None) -> dict[str, Any]:
        label, score = answer if answer is not None else (None, None)
        written: dict[str, Any] = {self.config.output_field: label}
        if self.config.score_field:
            written[self.config.score_field] = score
        return written


provider_index.register(HuggingFaceProvider.name, HuggingFaceConfig, HuggingFaceProvider)
