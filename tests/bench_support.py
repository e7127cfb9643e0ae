"""Running a benchmark script's --smoke mode the way `make test` does: this venv, the repo on the path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent.parent / "bench"


def run_smoke(script: str, *arguments: str, timeout_s: float) -> str:
    """`python bench/SCRIPT --smoke ARGUMENTS`; its stdout, after checking it exited 0 (else its output's tail)."""
    result = subprocess.run(
        [sys.executable, str(BENCH / script), "--smoke", *arguments], capture_output=True, text=True,
        timeout=timeout_s, check=False, env={**os.environ, "PYTHONPATH": str(BENCH.parent)},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout
