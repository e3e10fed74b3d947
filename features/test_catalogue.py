"""The checked-in step catalogue (features/STEPS.md) matches the step library."""

from __future__ import annotations

from features.catalogue import STEPS_MD, collect, render


def test_steps_md_is_current() -> None:
    current = STEPS_MD.read_text("utf-8")
    assert current == render(current), (
        "features/STEPS.md is stale: regenerate it with `.venv/bin/python -m features.catalogue`")


def test_every_step_has_both_phrasings_and_an_example() -> None:
    entries = collect()
    assert len(entries) > 40
    for entry in entries:
        assert entry.english and entry.chinese, f"{entry.function} needs an English and a Chinese phrasing"
    assert "(not used in a feature yet)" not in render()
