"""bench/redact.py keeps working: its --smoke mode times `Redactor.redact` (all kinds) and the one-regex `re.sub`
baseline over the same generated texts and prints both rates and their ratio; the generated PII is all found and the
texts without PII come back unchanged (the 20,000-text run itself is a benchmark, not a test)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent.parent / "bench" / "redact.py"


def test_redaction_benchmark_smoke_prints_rates_and_the_ratio_to_the_baseline() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--smoke"], capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(BENCH.parent.parent)},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"^redaction: 500 texts of 200 chars \(250 with PII\), one core of \d+, load [\d.]+, best of 1$",
                     out, re.MULTILINE), out
    baseline = re.search(r"^\(b\) re\.sub, one e-mail regex +([\d,]+) +1\.00$", out, re.MULTILINE)
    redact = re.search(r"^\(a\) Redactor\.redact, 7 kinds +([\d,]+) +(\d+\.\d\d) +"
                       r"\(target >= 20,000 texts/s (met|MISSED)\)$", out, re.MULTILINE)
    assert baseline is not None and redact is not None, out
    base_rate, rate = (float(found.group(1).replace(",", "")) for found in (baseline, redact))
    assert base_rate > 0 and rate > 0
    assert abs(float(redact.group(2)) - rate / base_rate) < 0.01, out
    assert (redact.group(3) == "met") == (rate >= 20_000), out
    changed = re.search(r"^values replaced: ([\d,]+); texts changed: 250 of 250 with PII, 0 of 250 without; "
                        r"cost per text [\d.]+ us$", out, re.MULTILINE)
    assert changed is not None, out
    assert int(changed.group(1).replace(",", "")) >= 250
