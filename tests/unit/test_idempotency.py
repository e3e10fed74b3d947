"""Idempotency by request serial, against an in-memory store."""

from __future__ import annotations

from typing import Any

import pytest

from simulator.domain.idempotency import Idempotency, fingerprint
from simulator.errors import InsufficientBalance, SerialConflict, SerialNotFound, SystemBusy
from simulator.store import Store


@pytest.fixture
def idem() -> Idempotency:
    return Idempotency(Store.open(None))


def test_fingerprint_ignores_key_order() -> None:
    assert fingerprint("op", {"a": 1, "b": "二"}) == fingerprint("op", {"b": "二", "a": 1})
    assert fingerprint("op", {"a": 1}) != fingerprint("other", {"a": 1})


def test_same_serial_same_request_is_answered_once(idem: Idempotency) -> None:
    calls: list[int] = []

    def apply() -> dict[str, Any]:
        calls.append(1)
        idem.store.set_kv("effect", str(len(calls)))
        return {"n": len(calls)}

    first = idem.run("app", "S1", "op", {"x": 1}, 0, apply)
    again = idem.run("app", "S1", "op", {"x": 1}, 5, apply)
    assert calls == [1]
    assert first.body == again.body and again.replayed and not first.replayed
    assert idem.store.get_kv("effect") == "1"
    assert idem.original("app", "S1", "op").body == first.body


def test_serials_are_scoped_per_platform(idem: Idempotency) -> None:
    a = idem.run("app-a", "S1", "op", {}, 0, lambda: {"who": "a"})
    b = idem.run("app-b", "S1", "op", {}, 0, lambda: {"who": "b"})
    assert (a.body["data"], b.body["data"]) == ({"who": "a"}, {"who": "b"})


def test_different_request_with_a_used_serial_conflicts(idem: Idempotency) -> None:
    idem.run("app", "S1", "op", {"x": 1}, 0, lambda: {})
    for operation, payload in (("op", {"x": 2}), ("other-op", {"x": 1})):
        answer = idem.run("app", "S1", operation, payload, 0, lambda: {})
        assert (answer.status, answer.body["code"]) == (409, SerialConflict.code)
        assert answer.body["request_serial"] == "S1" and not answer.replayed


def test_rejection_is_stored_and_its_effects_rolled_back(idem: Idempotency) -> None:
    def apply() -> dict[str, Any]:
        idem.store.set_kv("half-done", "yes")
        raise InsufficientBalance("no money")

    answer = idem.run("app", "S1", "op", {}, 0, apply)
    assert (answer.status, answer.body["code"]) == (422, "3008")
    assert idem.store.get_kv("half-done") is None
    replay = idem.run("app", "S1", "op", {}, 0, lambda: {"would": "succeed"})
    assert replay.body == answer.body and replay.replayed


def test_retryable_errors_are_not_stored(idem: Idempotency) -> None:
    def busy() -> dict[str, Any]:
        raise SystemBusy()

    with pytest.raises(SystemBusy):
        idem.run("app", "S1", "op", {}, 0, busy)
    assert idem.run("app", "S1", "op", {}, 0, lambda: {"ok": 1}).body["data"] == {"ok": 1}


def test_unknown_serial(idem: Idempotency) -> None:
    with pytest.raises(SerialNotFound):
        idem.original("app", "nope", "op")
