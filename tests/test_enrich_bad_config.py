"""Bad enrichment config as a user meets it on `headwater run`: an unknown provider is refused when the file loads,
and a provider that cannot start (no API key, an endpoint that does not answer) ends the run in one line before
anything is consumed."""

from __future__ import annotations

import os
from pathlib import Path

from headwater.ports import free_port
from tests.cli import headwater
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService
from tests.pipeline_support import contact, encoder, pipeline_file, produce_values
from tests.worker_support import committed, consumer_group

INTENT = {
    "prompt": "Intent of: {notes}",
    "outputs": {"intent": {"type": "string", "enum": ["question", "complaint"]}},
}


def test_an_unknown_provider_is_refused_naming_the_file_the_step_and_the_known_ones(tmp_path: Path) -> None:
    pipeline = pipeline_file(tmp_path, "crm.contacts.raw", enrich=[{"provider": "gpt_magic", "options": {}}])
    result = headwater("run", str(pipeline), "--bootstrap-servers", "127.0.0.1:1")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert str(pipeline) in line and "enrich.0" in line and "unknown enrichment provider 'gpt_magic'" in line
    assert "aws_comprehend" in line and "openai" in line


def _run(kafka: KafkaService, registry: RegistryService, tmp_path: Path, options: dict[str, object],
         env: dict[str, str]) -> tuple[str, str, Path]:
    raw = kafka.create_topic(partitions=1)
    serializer = encoder(registry.client(), raw)
    produce_values(kafka.bootstrap, raw, [(b"C000001", serializer.encode(contact(1)))])
    pipeline = pipeline_file(tmp_path, raw, quality=None,
                             enrich=[{"provider": "openai", "options": {**INTENT, **options}}])
    result = headwater("run", str(pipeline), "--bootstrap-servers", kafka.bootstrap, "--registry-url", registry.url,
                       "--status-port", "0", "--startup-timeout", "60", env=env, timeout=180)
    assert result.returncode == 1, result.stderr[-3000:]
    return result.stderr.strip().splitlines()[-1], raw, pipeline


def test_a_missing_api_key_ends_the_run_in_one_line_before_anything_is_consumed(
    kafka: KafkaService, registry: RegistryService, tmp_path: Path
) -> None:
    env = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
    line, raw, pipeline = _run(kafka, registry, tmp_path, {}, {**env, "OPENAI_API_KEY": ""})
    assert line.endswith("provider openai: openai: no API key (set api_key or OPENAI_API_KEY)"), line
    assert committed(kafka.bootstrap, consumer_group(pipeline), raw, 1)[0] < 0


def test_an_endpoint_that_does_not_answer_ends_the_run_in_one_line_before_anything_is_consumed(
    kafka: KafkaService, registry: RegistryService, tmp_path: Path
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    line, raw, pipeline = _run(kafka, registry, tmp_path, {"base_url": nowhere, "api_key": "sk-test"}, {})
    assert "provider openai: openai: cannot reach" in line and nowhere in line, line
    assert committed(kafka.bootstrap, consumer_group(pipeline), raw, 1)[0] < 0
