"""`headwater schemas register|check` against the real registry: happy paths and failures with reasons."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

from typer.testing import CliRunner

from headwater.ports import free_port
from schemas.catalog import SCHEMA_DIR, entries
from streams.cli import app
from tests.fixtures.registry import RegistryService

runner = CliRunner()


def own_copy(tmp_path: Path) -> tuple[Path, str]:
    """The shipped schemas under a unique domain name, so subjects do not collide with other tests."""
    domain = f"crm{uuid.uuid4().hex[:8]}"
    shutil.copytree(SCHEMA_DIR / "crm", tmp_path / domain)
    return tmp_path, domain


def test_register_then_check_then_register_again(registry: RegistryService, tmp_path: Path) -> None:
    directory, domain = own_copy(tmp_path)
    first = runner.invoke(app, ["schemas", "register", "--registry-url", registry.url, "--dir", str(directory)])
    assert first.exit_code == 0, first.output
    for entry in entries(directory):
        assert f"ok    {entry.subject}" in first.output
    assert f"{domain}.contacts.enriched-value" in first.output
    assert registry.client().get_latest_version(f"{domain}.opportunities.raw-value").version == 1

    offset = registry.end_offset()
    check = runner.invoke(app, ["schemas", "check", "--registry-url", registry.url, "--dir", str(directory)])
    assert check.exit_code == 0, check.output
    again = runner.invoke(app, ["schemas", "register", "--registry-url", registry.url, "--dir", str(directory)])
    assert again.exit_code == 0 and again.output == first.output
    assert registry.end_offset() == offset, "check and an unchanged register write nothing"


def test_incompatible_change_fails_check_and_register_with_the_reason(
    registry: RegistryService, tmp_path: Path
) -> None:
    directory, domain = own_copy(tmp_path)
    first = runner.invoke(app, ["schemas", "register", "--registry-url", registry.url, "-d", str(directory)])
    assert first.exit_code == 0
    contact = directory / domain / "contact.avsc"
    schema = json.loads(contact.read_text())
    schema["fields"].append({"name": "loyalty_tier", "type": "int"})
    contact.write_text(json.dumps(schema))
    offset = registry.end_offset()

    check = runner.invoke(app, ["schemas", "check", "--registry-url", registry.url, "-d", str(directory)])
    assert check.exit_code == 1
    assert f"FAIL  {domain}.contacts.raw-value" in check.output
    assert "loyalty_tier" in check.output and "READER_FIELD_MISSING_DEFAULT_VALUE" in check.output
    register = runner.invoke(app, ["schemas", "register", "--registry-url", registry.url, "-d", str(directory)])
    assert register.exit_code == 1
    assert "incompatible" in register.output and "loyalty_tier" in register.output
    assert registry.end_offset() == offset


def test_invalid_avsc_and_unreachable_registry(registry: RegistryService, tmp_path: Path) -> None:
    directory, domain = own_copy(tmp_path)
    (directory / domain / "account.avsc").write_text('{"type": "record", "fields": []}')
    check = runner.invoke(app, ["schemas", "check", "--registry-url", registry.url, "-d", str(directory)])
    # As in Confluent, a verbose compatibility check answers an invalid schema with the reason, not with 42201.
    assert check.exit_code == 1 and "Invalid schema" in check.output and f"{domain}.accounts.raw-value" in check.output

    down = f"http://127.0.0.1:{free_port()}"
    for command in ("check", "register"):
        result = runner.invoke(app, ["schemas", command, "--registry-url", down, "-d", str(directory)])
        assert result.exit_code == 1 and "unreachable" in result.output
    missing = runner.invoke(app, ["schemas", "check", "--registry-url", registry.url, "-d", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "does not exist" in missing.output
