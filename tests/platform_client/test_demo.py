"""The README's demo, small: it ends with the books in agreement, and it is deterministic."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.network


def _demo(tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "platform_client.cli", "demo", "--users", "40",
                           "--days", "2", "--keep", str(tmp)],
                          capture_output=True, text=True, timeout=300, check=False)


def _stable(text: str) -> str:
    # The only run-dependent parts: the bank's free port and the working directory.
    return re.sub(r"bank at \S+, state in \S+", "bank at URL, state in DIR", text)


def test_demo_accounts_for_all_money_and_replays_identically(tmp_path: Path) -> None:
    first, second = _demo(tmp_path / "a"), _demo(tmp_path / "b")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = first.stdout
    assert "result: all money accounted for" in out
    assert "bank ledger invariants: hold" in out
    assert "DROPPED" in out and "credited on reconciliation" in out  # a dropped notification found
    assert re.search(r"FAILED 30\d\d .* -> re-sent", out)              # a failed record re-sent
    assert re.search(r"originals: (\d+)/\1 succeeded", out)
    assert _stable(second.stdout) == _stable(out)
