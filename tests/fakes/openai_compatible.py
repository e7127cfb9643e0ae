"""The OpenAI-compatible fake for tests: response bodies, deterministic answers and the standalone server live in
`streams.fake_openai` (the package ships it for `headwater up`'s offline demo);
`python -m tests.fakes.openai_compatible --port P` runs the same server."""

from __future__ import annotations

from streams.fake_openai import (
    EMBEDDING_DIMENSIONS,
    MODELS,
    RECORD_SECTION,
    FakeOpenAI,
    answer,
    answer_object,
    chat_answer,
    chat_completion,
    embeddings,
    embeddings_answer,
    error,
    is_packed,
    main,
    models,
    tokens,
    usage,
    vector,
)

__all__ = [
    "EMBEDDING_DIMENSIONS",
    "MODELS",
    "RECORD_SECTION",
    "FakeOpenAI",
    "answer",
    "answer_object",
    "chat_answer",
    "chat_completion",
    "embeddings",
    "embeddings_answer",
    "error",
    "is_packed",
    "main",
    "models",
    "tokens",
    "usage",
    "vector",
]

if __name__ == "__main__":
    main()
