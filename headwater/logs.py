"""Structured logging: one event per line as key=value pairs, to stderr."""

from __future__ import annotations

import logging
import sys


def configure_logging(verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    for package in ("headwater", "schemas", "quality", "connectors", "streams"):
        logging.getLogger(package).setLevel(logging.DEBUG if verbose else logging.INFO)
