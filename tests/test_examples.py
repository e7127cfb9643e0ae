"""Every example a user copies from `examples/` loads through the real config models: the enrichment pipelines (their
providers exist, their options are valid, the fields they write are in the output schema), a connect file per
connector with the environment variables its header names, and the shipped pipelines; the README links them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from connectors.connector_index import available
from connectors.runner import ConfigError, load_plan
from streams.cli import connect
from streams.enrich import provider_index
from streams.runtime.config import load_pipeline

REPO = Path(__file__).parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def test_there_is_an_example_per_shipped_remote_and_local_model_provider() -> None:
    shown = {step.provider for path in EXAMPLES for step in load_pipeline(path).enrich}
    assert set(provider_index.MODULES) - {"sentiment", "language"} <= shown


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_the_example_loads(path: Path) -> None:
    config = load_pipeline(path)
    assert config.enrich, f"{path.name} has no enrichment step"


CONNECT_EXAMPLES = sorted((REPO / "examples" / "connect").glob("*.yaml"))
PIPELINE_EXAMPLES = sorted((REPO / "examples" / "pipelines").glob("*.yaml"))
SHIPPED_PIPELINES = sorted((REPO / "streams" / "pipelines").glob("*.yaml"))
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HEADER_NAME = re.compile(r"^#   ([A-Z][A-Z0-9_]*(?:, [A-Z][A-Z0-9_]*)*)\s")


def header_variables(path: Path) -> set[str]:
    """The environment variables the file's header comment names under `# Environment...:`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("# Environment"))
    names: set[str] = set()
    for line in lines[start + 1:]:
        if not line.startswith("#   "):
            break
        if (found := _HEADER_NAME.match(line)) is not None:
            names.update(found.group(1).split(", "))
    return names


def connectors_in(path: Path) -> set[str]:
    return {entry["connector"] for entry in yaml.safe_load(path.read_text(encoding="utf-8"))["connectors"]}


def test_there_is_a_connect_example_per_connector_and_connect_list_names_it() -> None:
    assert set().union(*(connectors_in(path) for path in CONNECT_EXAMPLES)) == set(available())
    assert set(connect.EXAMPLES) == set(available())
    for name, file in connect.EXAMPLES.items():
        assert name in connectors_in(REPO / "examples" / "connect" / file), (name, file)


@pytest.mark.parametrize("path", CONNECT_EXAMPLES, ids=[path.name for path in CONNECT_EXAMPLES])
def test_the_connect_example_validates_with_the_variables_its_header_names(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = header_variables(path)
    used = set(_VARIABLE.findall(path.read_text(encoding="utf-8")))
    assert used <= named, f"{path.name} uses {used - named} without naming them in its header"
    assert {"HEADWATER_KAFKA__BOOTSTRAP_SERVERS", "HEADWATER_REGISTRY__URL"} <= named
    for name in used:
        monkeypatch.delenv(name, raising=False)
    if used:
        with pytest.raises(ConfigError, match="is not set"):
            load_plan(path)
    for name in named:
        monkeypatch.setenv(name, "https://example.test" if name.endswith("_URL") else f"example-{name.lower()}")
    monkeypatch.setenv("HEADWATER_KAFKA__BOOTSTRAP_SERVERS", "localhost:9092")
    plan = load_plan(path)
    assert plan.connectors and plan.settings.registry.url == "https://example.test"


def test_there_is_a_pipeline_example_per_shipped_pipeline_and_it_is_the_shipped_one() -> None:
    assert [path.name for path in PIPELINE_EXAMPLES] == [path.name for path in SHIPPED_PIPELINES]
    for example, shipped in zip(PIPELINE_EXAMPLES, SHIPPED_PIPELINES, strict=True):
        assert load_pipeline(example).model_dump() == load_pipeline(shipped).model_dump(), example.name
        assert {"HEADWATER_KAFKA__BOOTSTRAP_SERVERS", "HEADWATER_REGISTRY__URL"} <= header_variables(example)


def test_the_readme_links_every_example() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for path in [*CONNECT_EXAMPLES, *PIPELINE_EXAMPLES]:
        assert f"({path.relative_to(REPO)})" in readme, f"README does not link {path.relative_to(REPO)}"
