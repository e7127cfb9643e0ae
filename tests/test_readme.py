"""README's Python API example runs as written against the real broker and registry (settings from the
environment, as the example says)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from confluent_kafka.schema_registry import Schema

from schemas import catalog
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService

README = Path(__file__).parent.parent / "README.md"


def test_the_python_api_example_runs_as_written(kafka: KafkaService, registry: RegistryService) -> None:
    example = re.search(r"### Python API\n\n```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert example is not None
    if "crm.contacts.raw" not in kafka.admin().list_topics(timeout=10).topics:
        kafka.create_topic("crm.contacts.raw")
    registry.client().register_schema("crm.contacts.raw-value",
                                      Schema(json.dumps(catalog.load_schema("crm/contact")), "AVRO"))
    result = subprocess.run(
        [sys.executable, "-c", example[1]], capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "HEADWATER_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap,
             "HEADWATER_REGISTRY__URL": registry.url},
    )
    assert result.returncode == 0, result.stderr
    assert " C1 Ng python" in result.stdout
