"""Fixtures that start real services for the tests. Each area keeps its fixtures in tests/fixtures/<area>.py
and lists the module in pytest_plugins below."""

from __future__ import annotations

pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.postgres",
    "tests.fixtures.s3",
    "tests.fixtures.registry",
]
