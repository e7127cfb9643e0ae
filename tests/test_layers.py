"""The packages stand on floors and import only downward: the kernel (`headwater`) imports none of the others,
`schemas` and `quality` only the kernel, `connectors` those, `streams` (with the CLI) anything below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
FLOORS = {"headwater": 0, "schemas": 1, "quality": 1, "connectors": 2, "streams": 3}


def _imported_packages(path: Path) -> set[tuple[str, int]]:
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found.update((name.split(".")[0], node.lineno) for name in names if name.split(".")[0] in FLOORS)
    return found


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_package_imports_nothing_above_its_floor(package: str) -> None:
    upward = [
        f"{path.relative_to(ROOT)}:{line} imports {imported}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for imported, line in sorted(_imported_packages(path))
        if FLOORS[imported] > FLOORS[package] or (FLOORS[imported] == FLOORS[package] and imported != package)
    ]
    assert upward == []


def test_only_the_kafka_layer_builds_kafka_clients() -> None:
    constructors = ("Producer(", "Consumer(", "AdminClient(", "AIOKafkaProducer(", "AIOKafkaConsumer(")
    builders = []
    for package in FLOORS:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.parent.name == "kafka" and path.parent.parent.name == "headwater":
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                code = line.split("#")[0]
                if any(f" {name}" in code or f"({name}" in code or f"={name}" in code for name in constructors):
                    builders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert builders == []
