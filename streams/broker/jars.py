"""Locates the Kafka jars, resolving them from Maven Central through the checked-in pom when missing."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from streams.broker.errors import BrokerError

KAFKA_VERSION = "3.9.1"
POM = Path(__file__).with_name("pom.xml")
log = logging.getLogger(__name__)


def _repo_root() -> Path | None:
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def libs_dir() -> Path:
    """Where the jars live: $HEADWATER_KAFKA_LIBS, else the repo's ignored .cache, else the user cache."""
    override = os.environ.get("HEADWATER_KAFKA_LIBS")
    if override:
        return Path(override)
    root = _repo_root()
    base = root / ".cache" if root else Path.home() / ".cache" / "headwater"
    return base / f"kafka-{KAFKA_VERSION}" / "libs"


def jars_present(directory: Path) -> bool:
    return (directory / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file() and any(
        directory.glob("slf4j-reload4j-*.jar")
    )


def ensure_jars() -> Path:
    """Return the jar folder, running Maven once to fill it if it is empty."""
    target = libs_dir()
    if jars_present(target):
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            f"Kafka jars are not in {target} and Maven (mvn) is not installed to fetch them; "
            "install Maven or set HEADWATER_KAFKA_LIBS to a folder holding the Kafka "
            f"{KAFKA_VERSION} jars"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("event=kafka_jars_resolve version=%s target=%s", KAFKA_VERSION, target)
    # Resolve into a sibling temp folder and rename, so an interrupted run never leaves half a classpath.
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=target.parent))
    command = [
        mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not jars_present(staging):
        shutil.rmtree(staging, ignore_errors=True)
        detail = (result.stdout + result.stderr).strip().splitlines()[-1:] or ["no output"]
        raise BrokerError(f"Maven could not resolve the Kafka jars: {detail[0]}")
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target
