"""Every example pipeline a user copies from `examples/` loads: its providers exist, its options are valid, and the
fields its providers write are in its output schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.enrich import provider_index
from streams.runtime.config import load_pipeline

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))


def test_there_is_an_example_per_shipped_remote_and_local_model_provider() -> None:
    shown = {step.provider for path in EXAMPLES for step in load_pipeline(path).enrich}
    assert set(provider_index.MODULES) - {"sentiment", "language"} <= shown


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_the_example_loads(path: Path) -> None:
    config = load_pipeline(path)
    assert config.enrich, f"{path.name} has no enrichment step"
