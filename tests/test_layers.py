"""The packages stand on floors and import only downward: the kernel (`headwater`) imports none of the others,
`schemas` and `quality` only the kernel, `connectors` and the public API (`headwater.api`, which encodes through the
registry) those, `streams` (with the CLI) anything below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
FLOORS = {"headwater": 0, "schemas": 1, "quality": 1, "connectors": 2, "headwater.api": 2, "streams": 3}


def _package_of(module: str) -> str:
    return "headwater.api" if module == "headwater.api" or module.startswith("headwater.api.") else module.split(".")[0]


def _imported_packages(path: Path) -> set[tuple[str, int]]:
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found.update((_package_of(name), node.lineno) for name in names if _package_of(name) in FLOORS)
    return found


def _files_of(package: str) -> list[Path]:
    """The package's modules; the kernel's without `headwater/api` (a floor of its own) and without the package's
    `__init__`, the facade through which `headwater.Producer` reaches the API lazily (`import headwater` loads none
    of it)."""
    files = sorted((ROOT / package.replace(".", "/")).rglob("*.py"))
    if package != "headwater":
        return files
    facade = ROOT / "headwater" / "__init__.py"
    return [path for path in files if "api" not in path.relative_to(ROOT).parts and path != facade]


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_package_imports_nothing_above_its_floor(package: str) -> None:
    upward = [
        f"{path.relative_to(ROOT)}:{line} imports {imported}"
        for path in _files_of(package)
        for imported, line in sorted(_imported_packages(path))
        if FLOORS[imported] > FLOORS[package] or (FLOORS[imported] == FLOORS[package] and imported != package)
    ]
    assert upward == []


CLIENT_CLASSES = frozenset({
    "Producer", "Consumer", "AdminClient", "SerializingProducer", "DeserializingConsumer", "AIOKafkaProducer",
    "AIOKafkaConsumer", "AIOKafkaAdminClient",
})


def _client_constructions(path: Path) -> list[int]:
    """Lines that call a Kafka client class imported from confluent_kafka or aiokafka."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("confluent_kafka", "aiokafka")
        for alias in node.names
        if alias.name in CLIENT_CLASSES
    }
    return [
        node.lineno for node in ast.walk(tree)
        if isinstance(node, ast.Call) and (
            (isinstance(node.func, ast.Name) and node.func.id in imported)
            or (isinstance(node.func, ast.Attribute) and node.func.attr in CLIENT_CLASSES
                and isinstance(node.func.value, ast.Name) and node.func.value.id in ("confluent_kafka", "aiokafka"))
        )
    ]


def test_only_the_kafka_layer_builds_kafka_clients() -> None:
    builders = [
        f"{path.relative_to(ROOT)}:{line}"
        for package in ("headwater", "schemas", "quality", "connectors", "streams")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.parent != ROOT / "headwater" / "kafka"
        for line in _client_constructions(path)
    ]
    assert builders == []
