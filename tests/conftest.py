"""Fixtures that start real services for the tests. Each area keeps its fixtures in tests/fixtures/<area>.py
and lists the module in pytest_plugins below."""

from __future__ import annotations

import os
import tempfile

# Enrichment result caches of the processes tests start go to a directory of this run, so no run answers from a
# previous one's cache (a test that expects provider calls would see hits instead).
os.environ.setdefault("HEADWATER_ENRICH__CACHE_DIR", tempfile.mkdtemp(prefix="headwater-test-cache-"))

pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.postgres",
    "tests.fixtures.s3",
    "tests.fixtures.registry",
]
