"""The fast opening path answers exactly what the framework path answers.

The middleware serves the hot operations through their direct form (``direct_routes``)
and the Bank takes shortcuts (a cached Class III sequence, a reused answer encoding, a
compiled identity check). These tests hold each shortcut to the plain way: the same
requests sent to a bank served with and without the direct routes must get byte-identical
answers and leave identical timelines; a rolled-back opening must not skip or reuse an
account number.
"""

from __future__ import annotations

import asyncio
import random
from datetime import date
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.signing import sign_headers
from simulator.bank import Bank
from simulator.domain import identity
from simulator.domain.identity import make_card_number, make_id_number
from simulator.http import middleware
from simulator.http.app import create_app
from simulator.http.bank_routes import _dump
from simulator.http.schemas import OpenAccountRequest, RefundRequest
from tests.conftest import make_profile

APP, SECRET = "demo-platform", "banksim-dev-secret"
Exchange = tuple[int, str | None, str | None, bytes]


def opening(serial: str, seq: int = 1, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "request_serial": serial, "name": "张三",
        "id_number": make_id_number("310101", date(1990, 1, 1), seq),
        "mobile": "13800138000", "bound_card_number": make_card_number("622202", 19, seq),
        "bound_card_kind": "DEBIT_I"}
    body.update(changes)
    return body


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


# (path, body bytes, content type): successes, replays, conflicts, business rejections,
# bodies the schema refuses, bodies the framework does not read as JSON, injected faults.
REQUESTS: list[tuple[str, bytes, str]] = [
    ("/api/v1/accounts/open", _json(opening("S1", 1)), "application/json"),
    ("/api/v1/accounts/open", _json(opening("S1", 1)), "application/json"),
    ("/api/v1/accounts/open", _json({**opening("S1", 1), "name": "李四"}), "application/json"),
    ("/api/v1/accounts/open", _json(opening("S2", 2, id_number="310101199001010010")),
     "application/json"),
    ("/api/v1/accounts/open", _json(opening("S3", 3, mobile="19900001234")), "application/json"),
    ("/api/v1/accounts/open", _json({k: v for k, v in opening("S4", 4).items() if k != "name"}),
     "application/json"),
    ("/api/v1/accounts/open", _json({**opening("S5", 5), "extra": "x"}), "application/json"),
    ("/api/v1/accounts/open", _json({**opening("S6", 6), "name": 7}), "application/json"),
    ("/api/v1/accounts/open", _json(opening("bad serial!", 7)), "application/json"),
    ("/api/v1/accounts/open", _json(opening("S8", 8)), "text/plain"),
    ("/api/v1/accounts/open", _json(opening("S9", 9)), "application/json; charset=utf-8"),
    ("/api/v1/accounts/open", _json(opening("S10", 10)), "application/merchant+json"),
    ("/api/v1/accounts/open", b"[1, 2]", "application/json"),
    ("/api/v1/accounts/open", b"{not json", "application/json"),
    ("/api/v1/accounts/open", b"", "application/json"),
    ("/api/v1/accounts/open", _json(opening("S-BUSY-1", 11)), "application/json"),
    ("/api/v1/accounts/open", _json(opening("S-BUSY-1", 11)), "application/json"),
    ("/api/v1/refunds", _json({"request_serial": "R1", "account_no": "0", "amount": "1.00"}),
     "application/json"),
    ("/api/v1/refunds", _json({"request_serial": "R2", "account_no": "0", "amount": "1.5"}),
     "application/json"),
]


def _exchange_all(bank: Bank) -> list[Exchange]:
    async def run() -> list[Exchange]:
        transport = httpx.ASGITransport(app=create_app(bank))
        out: list[Exchange] = []
        async with httpx.AsyncClient(transport=transport, base_url="http://bank") as client:
            for path, body, content_type in REQUESTS:
                headers = {**sign_headers(APP, SECRET, "POST", path, body),
                           "Content-Type": content_type}
                answer = await client.post(path, content=body, headers=headers)
                out.append((answer.status_code, answer.headers.get("content-type"),
                            answer.headers.get("x-idempotent-replay"), answer.content))
        return out

    return asyncio.run(run())


def _timeline(bank: Bank) -> list[tuple[str, str | None, str | None, dict[str, Any]]]:
    return [(e["kind"], e["app_id"], e["ref"], e["detail"]) for e in bank.events(limit=10_000)]


def test_direct_routes_answer_byte_for_byte_like_the_framework(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fast_bank = Bank(make_profile(), None, group_commit=True)
    fast = _exchange_all(fast_bank)
    # The same requests to a bank whose middleware has no direct routes: every request
    # goes through FastAPI's routing, validation and error handlers.
    monkeypatch.setattr(middleware, "direct_routes", lambda bank: {})
    plain_bank = Bank(make_profile(), None, group_commit=True)
    plain = _exchange_all(plain_bank)
    try:
        assert [status for status, *_ in fast] == [
            200, 200, 409, 422, 422, 400, 400, 400, 400, 400, 200, 200, 400, 400, 400,
            503, 200, 404, 400]
        assert fast[1][2] == "true" and fast[0][2] is None  # the replay says so
        for index, (got, want) in enumerate(zip(fast, plain, strict=True)):
            assert got == want, f"request {index}: {REQUESTS[index]}"
        assert _timeline(fast_bank) == _timeline(plain_bank)
        assert not fast_bank.invariants()
    finally:
        fast_bank.close()
        plain_bank.close()


def test_dump_of_the_direct_schemas_is_model_dump() -> None:
    open_body = OpenAccountRequest.model_validate(opening("S1"))
    refund_body = RefundRequest.model_validate(
        {"request_serial": "R1", "account_no": "1", "amount": "1.00"})
    assert _dump(open_body) == open_body.model_dump()
    assert _dump(refund_body) == refund_body.model_dump() == {
        "request_serial": "R1", "account_no": "1", "amount": "1.00", "memo": ""}


def test_a_rolled_back_opening_neither_skips_nor_reuses_an_account_number() -> None:
    def numbers(rollback: bool) -> list[str]:
        bank = Bank(make_profile(), None, group_commit=True)
        opened = [bank.open_account(APP, opening("A", 1)).body["data"]["account_no"]]
        if rollback:
            with pytest.raises(RuntimeError), bank.store.transaction():
                bank.open_account(APP, opening("B", 2))
                raise RuntimeError("the group fails after the opening")
        bank.flush()
        for serial, seq in (("C", 3), ("D", 4)):
            opened.append(bank.open_account(APP, opening(serial, seq)).body["data"]["account_no"])
        bank.flush()
        assert bank.store.get_kv("accounts.class_iii_sequence") == "3"
        bank.close()
        return opened

    assert numbers(rollback=True) == numbers(rollback=False)


def test_store_counts_rollbacks() -> None:
    bank = Bank(make_profile(), None, group_commit=True)
    before = bank.store.rollbacks
    with bank.store.transaction():
        pass
    assert bank.store.rollbacks == before
    with pytest.raises(ValueError), bank.store.transaction():
        raise ValueError
    assert bank.store.rollbacks == before + 1
    bank.close()


@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_id_check_character_is_the_weighted_sum_of_gb_11643(first17: str) -> None:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(first17, weights, strict=True))
    assert identity.id_check_char(first17) == "10X98765432"[total % 11]


@given(st.text(alphabet="0123456789", min_size=1, max_size=30))
def test_luhn_check_digit_is_the_textbook_one(payload: str) -> None:
    total = 0
    for position, char in enumerate(reversed(payload)):
        digit = int(char) * (2 if position % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    assert identity.luhn_check_digit(payload) == str((10 - total % 10) % 10)


def test_names_take_the_same_decision_with_and_without_the_fast_match() -> None:
    # The one-regex fast path accepts exactly the names the character-by-character checks
    # accept (the checks still run for every name the regex refuses).
    rng = random.Random(11)
    alphabet = "张三·・a 1\u3400\u4dbf\u4e00\u9fff\u4dc0\ua000"
    for _ in range(20_000):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 8)))
        stripped = name.strip()
        slow_ok = (2 <= len(stripped) <= 30
                   and all(ch in "\u00b7\u30fb" or identity._is_name_ideograph(ch)
                           for ch in stripped)
                   and stripped[0] not in "\u00b7\u30fb" and stripped[-1] not in "\u00b7\u30fb"
                   and "\u00b7\u00b7" not in stripped and "\u30fb\u30fb" not in stripped
                   and "\u00b7\u30fb" not in stripped and "\u30fb\u00b7" not in stripped)
        try:
            identity.validate_name(name)
        except identity.NameInvalid:
            assert not slow_ok, name
        else:
            assert slow_ok, name
