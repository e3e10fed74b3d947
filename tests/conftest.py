"""Shared fixtures. Every test that uses ``bank`` has the ledger invariants checked after it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from simulator.bank import Bank
from simulator.config import Profile, load_profile, merge_patch, profile_from_dict


def make_profile(patch: dict[str, Any] | None = None) -> Profile:
    base = load_profile(None)
    return profile_from_dict(merge_patch(base.as_dict(), patch or {})) if patch else base


@pytest.fixture
def bank() -> Iterator[Bank]:
    b = Bank(make_profile({"bank": {"open_active": True}}), None)
    yield b
    violations = b.invariants()
    b.close()
    assert not violations, f"ledger invariants violated after the test: {violations}"
