"""`headwater connect list|run` as a user runs it: every connector documented, bad config refused before start."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.cli import headwater


def write(path: Path, connectors: list[dict[str, object]]) -> Path:
    path.write_text(yaml.safe_dump({"kafka": {"bootstrap.servers": "127.0.0.1:1"}, "connectors": connectors}))
    return path


def test_list_shows_every_connector_with_its_documented_fields() -> None:
    result = headwater("connect", "list", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    for name in ("postgres (sink)", "duckdb (sink)", "sql (source)"):
        assert name in result.stdout
    assert "tables[].updated_at_column" in result.stdout
    assert "Put the password in the environment" in result.stdout
    assert "ready config: examples/connect/sql-erp.yaml" in result.stdout


def test_unknown_connector_is_refused_naming_it(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", [{"name": "x", "connector": "oracle-magic", "config": {}}])
    result = headwater("connect", "run", str(config))
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "connectors[0].connector: unknown connector 'oracle-magic'" in line
    assert "postgres" in line and len(line.splitlines()) == 1


def test_bad_field_is_refused_with_its_path(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.yaml",
        [
            {
                "name": "wh",
                "connector": "postgres",
                "config": {"dsn": "postgresql://h/db", "topics": ["a.b.enriched"], "batch_size": -5},
            }
        ],
    )
    result = headwater("connect", "run", str(config))
    assert result.returncode == 2
    assert "connectors[0].config.batch_size: Input should be greater than 0" in result.stderr


def test_unknown_field_and_missing_env_variable_are_refused(tmp_path: Path) -> None:
    typo = write(
        tmp_path / "typo.yaml",
        [{"name": "wh", "connector": "duckdb", "config": {"database": "w.duckdb", "topics": ["t"], "batchsize": 1}}],
    )
    result = headwater("connect", "run", str(typo))
    assert result.returncode == 2
    assert "connectors[0].config.batchsize: Extra inputs are not permitted" in result.stderr

    secret = write(
        tmp_path / "secret.yaml",
        [{"name": "wh", "connector": "postgres", "config": {"dsn": "${HW_TEST_UNSET_DSN}", "topics": ["t"]}}],
    )
    result = headwater("connect", "run", str(secret))
    assert result.returncode == 2
    assert "environment variable HW_TEST_UNSET_DSN is not set" in result.stderr
