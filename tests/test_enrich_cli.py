"""`headwater enrich list` as a user runs it: every registered provider with its documented fields."""

from __future__ import annotations

from streams.enrich import provider_index
from tests.cli import headwater


def test_list_shows_every_provider_with_its_common_and_own_fields() -> None:
    result = headwater("enrich", "list", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    for name in provider_index.names():
        assert f"\n{name} (" in f"\n{result.stdout}", f"{name} missing from enrich list"
    assert "sentiment (local) — Sentiment of a text field with vaderSentiment" in result.stdout
    for common in ("max_attempts", "requests_per_minute", "on_too_long", "redact"):
        assert common in result.stdout
