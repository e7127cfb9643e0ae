"""`headwater enrich list` as a user runs it: every registered provider with its documented fields."""

from __future__ import annotations

import subprocess
import sys

from streams.enrich import provider_index
from tests.cli import headwater


def test_list_shows_every_provider_with_its_common_and_own_fields() -> None:
    result = headwater("enrich", "list", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    for name in provider_index.MODULES:  # the shipped ones (other tests register test providers in this process)
        assert f"\n{name} (" in f"\n{result.stdout}", f"{name} missing from enrich list"
    assert "sentiment (local) — Sentiment of a text field with vaderSentiment" in result.stdout
    for common in ("max_attempts", "requests_per_minute", "on_too_long", "redact"):
        assert common in result.stdout


def test_every_shipped_provider_module_registers_its_name() -> None:
    for name in provider_index.MODULES:
        _, provider = provider_index.entry(name)
        assert provider.name == name


def test_loading_a_pipeline_imports_no_sdk_of_a_provider_it_does_not_use() -> None:
    probe = (
        "import sys; from streams.runtime.config import load_pipeline; from streams.up import DEFAULT_PIPELINES; "
        "[load_pipeline(path) for path in DEFAULT_PIPELINES]; "
        "heavy = ('openai', 'anthropic', 'mlflow', 'model2vec', 'spacy', 'presidio_analyzer'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
