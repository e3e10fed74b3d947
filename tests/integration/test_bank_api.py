"""The bank API, the control API and the CLI over real sockets against `banksim serve`.

One server per module (``bank_server``); every test gets a reset bank with the default
profile (``server``/``client``) and has the ledger invariants checked after it.
Business delays are virtual: tests advance the clock, they never sleep.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from simulator.clock import CST, to_us
from simulator.domain.identity import id_check_char, luhn_valid, make_card_number, make_id_number

if TYPE_CHECKING:
    from tests.integration.conftest import BankServer, IdentityFactory, ServerStarter, SignedClient

pytestmark = pytest.mark.network

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 1, 5, 9, 0, tzinfo=CST)
OPEN = "/api/v1/accounts/open"
OTHER_PLATFORM = {
    "app_id": "other-platform",
    "secret": "other-platform-secret",
    "name": "另一出行平台",
    "supervision_account": "98010078801000002",
    "settlement_account": "31010078801000002",
    "supervision_opening_balance": "0.00",
}


# -- helpers ------------------------------------------------------------------------------


def ok(response: httpx.Response) -> dict[str, Any]:
    """The ``data`` of a 200/0000 answer."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] == "0000", body
    data: dict[str, Any] = body["data"]
    return data


def rejected(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert (response.status_code, response.json().get("code")) == (status, code), response.text
    body: dict[str, Any] = response.json()
    return body


def admin_ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def class_iii(server: BankServer) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = admin_ok(server.admin.get("/accounts", params={"kind": "CLASS_III"}))
    return rows


def patch_profile(server: BankServer, patch: dict[str, Any]) -> dict[str, Any]:
    profile: dict[str, Any] = admin_ok(server.admin.patch("/profile", json=patch))
    return profile


def deposit(server: BankServer, account_no: str, amount: str) -> dict[str, Any]:
    view: dict[str, Any] = admin_ok(
        server.admin.post(f"/accounts/{account_no}/deposit", json={"amount": amount}))
    return view


def balance(client: SignedClient, account_no: str) -> str:
    return str(ok(client.query_account(account_no))["balance"])


def open_ok(client: SignedClient, serial: str, identity: dict[str, str]) -> dict[str, Any]:
    return ok(client.open_account(serial, identity))


def open_active(server: BankServer, client: SignedClient, identity: dict[str, str],
                serial: str = "OPEN-ACTIVE-1") -> str:
    patch_profile(server, {"bank": {"open_active": True}})
    data = open_ok(client, serial, identity)
    assert data["status"] == "ACTIVE"
    return str(data["account_no"])


def clock_now(server: BankServer) -> datetime:
    return datetime.fromisoformat(admin_ok(server.admin.get("/clock"))["now"])


def run_cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANKSIM_")}
    return subprocess.run([sys.executable, "-m", "simulator.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def with_id(identity: dict[str, str], id_number: str) -> dict[str, str]:
    return {**identity, "id_number": id_number}


def bad_check_char(id_number: str) -> str:
    return id_number[:17] + next(c for c in "0123456789X" if c != id_number[17])


# -- opening ------------------------------------------------------------------------------


def test_open_account_answers_pending_images_with_a_valid_account_number(
        client: SignedClient, make_identity: IdentityFactory) -> None:
    identity = make_identity(1)
    response = client.open_account("OPEN-1", identity)
    data = ok(response)
    assert response.json()["request_serial"] == "OPEN-1"
    assert "x-idempotent-replay" not in response.headers
    no = data["account_no"]
    assert len(no) == 19 and no.isdigit() and no.startswith("623188") and luhn_valid(no)
    card = identity["bound_card_number"]
    assert data == {
        "account_no": no, "account_class": "III", "name": identity["name"],
        "status": "PENDING_IMAGES", "frozen": False, "balance": "0.00",
        "bound_card_number": card[:6] + "*" * (len(card) - 10) + card[-4:],
        "bound_card_kind": "DEBIT_I", "opened_at": START.isoformat(), "closed_at": None,
        "image_status": "NONE", "image_reason": None, "withholding_agreement": True,
    }


def test_query_opening_by_serial_returns_the_same_answer(
        client: SignedClient, make_identity: IdentityFactory) -> None:
    first = client.open_account("OPEN-Q-1", make_identity(2))
    ok(first)
    query = client.query_opening("OPEN-Q-1")
    assert query.status_code == 200
    assert query.json() == first.json()


def test_query_opening_unknown_serial_is_1021(client: SignedClient) -> None:
    rejected(client.query_opening("NEVER-SENT"), 404, "1021")


def test_query_account_shows_zero_balance_and_limits(
        client: SignedClient, make_identity: IdentityFactory) -> None:
    no = open_ok(client, "OPEN-L-1", make_identity(3))["account_no"]
    data = ok(client.query_account(no))
    assert data["account_no"] == no and data["balance"] == "0.00"
    assert data["status"] == "PENDING_IMAGES" and data["frozen"] is False
    assert data["limits"] == {
        "business_date": "2026-01-05", "balance_cap": "2000.00",
        "daily_outflow_limit": "2000.00", "daily_outflow_used": "0.00",
        "daily_outflow_remaining": "2000.00", "annual_outflow_limit": "50000.00",
        "annual_outflow_used": "0.00", "annual_outflow_remaining": "50000.00",
    }


def test_query_unknown_account_is_3009(client: SignedClient) -> None:
    rejected(client.query_account("6231880000000000000"), 404, "3009")


def _future_id() -> str:
    return make_id_number("310101", date(2030, 1, 1), 5)


def _not_a_date_id() -> str:
    first17 = "310101" + "19900230" + "005"
    return first17 + id_check_char(first17)


VALIDATION_CASES: list[tuple[str, str, Any]] = [
    ("2001", "name", "Zhang San"),
    ("2001", "name", "张"),
    ("2001", "name", "·张三"),
    ("2002", "id_number", "31010119900101123"),
    ("2002", "id_number", "3101011990010112A3"),
    ("2003", "id_number", bad_check_char(make_id_number("310101", date(1990, 1, 1), 5))),
    ("2004", "id_number", _future_id()),
    ("2004", "id_number", make_id_number("710101", date(1990, 1, 1), 5)),
    ("2004", "id_number", _not_a_date_id()),
    ("2005", "id_number", make_id_number("310101", date(2010, 1, 1), 5)),
    ("2005", "id_number", make_id_number("310101", date(2008, 1, 6), 5)),
    ("2006", "mobile", "12345678901"),
    ("2006", "mobile", "1380000000"),
    ("2007", "bound_card_number", make_card_number("622202", 19, 5)[:-1]
     + str((int(make_card_number("622202", 19, 5)[-1]) + 1) % 10)),
    ("2007", "bound_card_number", "4111111111111111"),
    ("2007", "bound_card_number", "62220200000000000000000"),
    ("2008", "bound_card_kind", "DEBIT_II"),
    ("2011", "bound_card_number", make_card_number("62999", 19, 5)),
    ("2012", "mobile", "19900001234"),
]


@pytest.mark.parametrize(("code", "field", "value"), VALIDATION_CASES,
                         ids=[f"{c}-{f}-{i}" for i, (c, f, _) in enumerate(VALIDATION_CASES)])
def test_opening_validation_errors(client: SignedClient, server: BankServer,
                                   make_identity: IdentityFactory,
                                   code: str, field: str, value: str) -> None:
    identity = {**make_identity(5), field: value}
    body = rejected(client.open_account("OPEN-BAD-1", identity), 422, code)
    assert body["request_serial"] == "OPEN-BAD-1"
    assert class_iii(server) == []


def test_applicant_who_turns_18_today_may_open(client: SignedClient,
                                               make_identity: IdentityFactory) -> None:
    identity = make_identity(6, birth=date(2008, 1, 5))
    assert open_ok(client, "OPEN-18-1", identity)["status"] == "PENDING_IMAGES"


def test_sixth_account_for_one_id_is_2010_and_a_closed_one_does_not_count(
        client: SignedClient, server: BankServer, make_identity: IdentityFactory) -> None:
    identity = make_identity(11)
    assert identity["id_number"].endswith("X")
    numbers = [open_ok(client, f"OPEN-MAX-{i}", identity)["account_no"] for i in range(5)]
    assert len(set(numbers)) == 5
    body = rejected(client.open_account("OPEN-MAX-5", identity), 422, "2010")
    assert body["request_serial"] == "OPEN-MAX-5"
    assert len(class_iii(server)) == 5
    assert ok(client.close_account(numbers[0], "CLOSE-MAX-0"))["status"] == "CLOSED"
    open_ok(client, "OPEN-MAX-6", identity)
    assert len(class_iii(server)) == 6
    # A lowercase check character is the same person.
    rejected(client.open_account("OPEN-MAX-7", with_id(identity, identity["id_number"].lower())),
             422, "2010")
    assert len(class_iii(server)) == 6


def test_malformed_json_is_1010(client: SignedClient, server: BankServer) -> None:
    rejected(client.post(OPEN, content=b'{"request_serial": "OPEN-J-1", "name": '), 400, "1010")
    rejected(client.post(OPEN, content=b"[1, 2, 3]"), 400, "1010")
    assert class_iii(server) == []


def test_missing_fields_are_1010(client: SignedClient, server: BankServer,
                                 make_identity: IdentityFactory) -> None:
    identity = make_identity(8)
    del identity["mobile"]
    body = rejected(client.open_account("OPEN-M-1", identity), 400, "1010")
    assert "mobile" in body.get("detail", "")
    rejected(client.post(OPEN, {"request_serial": "OPEN-M-2"}), 400, "1010")
    assert class_iii(server) == []


@pytest.mark.parametrize("serial", ["S 1", "S/1", "S" * 65, "", "序号1"])
def test_bad_serial_pattern_is_1010(client: SignedClient, server: BankServer,
                                    make_identity: IdentityFactory, serial: str) -> None:
    rejected(client.open_account(serial, make_identity(9)), 400, "1010")
    assert class_iii(server) == []


def test_unknown_field_is_1010(client: SignedClient, server: BankServer,
                               make_identity: IdentityFactory) -> None:
    rejected(client.post(OPEN, {"request_serial": "OPEN-X-1", **make_identity(9), "vip": True}),
             400, "1010")
    assert class_iii(server) == []


def test_oversized_body_is_1011(client: SignedClient, server: BankServer,
                                make_identity: IdentityFactory) -> None:
    body = {"request_serial": "OPEN-BIG-1", **make_identity(10), "name": "张" * 40_000}
    assert len(client.encode(body)) > 65_536
    rejected(client.post(OPEN, body), 413, "1011")
    assert class_iii(server) == []


# -- idempotency --------------------------------------------------------------------------


def test_same_serial_same_body_replays_the_answer(client: SignedClient, server: BankServer,
                                                  make_identity: IdentityFactory) -> None:
    identity = make_identity(11)
    first = client.open_account("IDEM-1", identity)
    ok(first)
    again = client.open_account("IDEM-1", identity)
    assert again.status_code == 200
    assert again.headers.get("x-idempotent-replay") == "true"
    assert again.json() == first.json()
    assert [a["account_no"] for a in class_iii(server)] == [first.json()["data"]["account_no"]]


def test_replay_with_reordered_keys_is_still_a_replay(client: SignedClient, server: BankServer,
                                                      make_identity: IdentityFactory) -> None:
    identity = make_identity(12)
    first = client.open_account("IDEM-2", identity)
    ok(first)
    reordered = dict(reversed(list({"request_serial": "IDEM-2", **identity}.items())))
    again = client.post(OPEN, content=json.dumps(reordered, indent=2, ensure_ascii=False).encode())
    assert again.status_code == 200 and again.headers.get("x-idempotent-replay") == "true"
    assert again.json() == first.json()
    assert len(class_iii(server)) == 1


def test_same_serial_different_body_is_1020(client: SignedClient, server: BankServer,
                                            make_identity: IdentityFactory) -> None:
    first = client.open_account("IDEM-3", make_identity(13))
    ok(first)
    rejected(client.open_account("IDEM-3", make_identity(14)), 409, "1020")
    assert len(class_iii(server)) == 1
    assert client.query_opening("IDEM-3").json() == first.json()


def test_rejected_opening_serial_replays_the_rejection(client: SignedClient, server: BankServer,
                                                       make_identity: IdentityFactory) -> None:
    bad = {**make_identity(15), "mobile": "12345678901"}
    first = client.open_account("IDEM-4", bad)
    rejected(first, 422, "2006")
    again = client.open_account("IDEM-4", bad)
    rejected(again, 422, "2006")
    assert again.headers.get("x-idempotent-replay") == "true"
    assert again.json() == first.json()
    query = client.query_opening("IDEM-4")
    assert (query.status_code, query.json()) == (422, first.json())
    # Fixing the request under the same serial is a different request.
    rejected(client.open_account("IDEM-4", make_identity(15)), 409, "1020")
    assert class_iii(server) == []


# -- signing ------------------------------------------------------------------------------


def _assert_nothing_happened(server: BankServer, client: SignedClient, serial: str,
                             identity: dict[str, str]) -> None:
    assert class_iii(server) == []
    rejected(client.query_opening(serial), 404, "1021")
    # The serial was not consumed: a properly signed request is processed for real.
    response = client.open_account(serial, identity)
    ok(response)
    assert "x-idempotent-replay" not in response.headers


SIGNING_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "no-headers": ("1001", {"sign": False}),
    "unknown-app": ("1002", {"app_id": "no-such-platform"}),
    "tampered-body": ("1003", {"sign_body": b'{"request_serial": "SIG-1"}'}),
    "tampered-path": ("1003", {"sign_path": "/api/v1/refunds"}),
    "tampered-method": ("1003", {"sign_method": "PUT"}),
    "wrong-secret": ("1003", {"secret": "not-the-right-secret"}),
    "bad-nonce-format": ("1003", {"nonce": "short"}),
    "stale-past": ("1004", {"timestamp_offset": -600}),
    "stale-future": ("1004", {"timestamp_offset": 600}),
}


@pytest.mark.parametrize("case", list(SIGNING_CASES))
def test_signature_failures_are_401_and_change_nothing(
        client: SignedClient, server: BankServer, make_identity: IdentityFactory, case: str) -> None:
    code, kwargs = SIGNING_CASES[case]
    if "timestamp_offset" in kwargs:  # the wall clock now, not at import time
        kwargs = {"timestamp": int(time.time()) + kwargs["timestamp_offset"]}
    identity = make_identity(20)
    rejected(client.open_account("SIG-1", identity, **kwargs), 401, code)
    _assert_nothing_happened(server, client, "SIG-1", identity)


def test_signed_query_string_must_match(client: SignedClient, server: BankServer,
                                        make_identity: IdentityFactory) -> None:
    no = open_ok(client, "SIG-Q-1", make_identity(21))["account_no"]
    path = f"/api/v1/accounts/{no}"
    rejected(client.get(path + "?x=1", sign_path=path), 401, "1003")
    ok(client.get(path + "?x=1"))


def test_replayed_nonce_is_1005(client: SignedClient, server: BankServer,
                                make_identity: IdentityFactory) -> None:
    identity = make_identity(22)
    ts = int(time.time())
    ok(client.open_account("NONCE-1", identity, timestamp=ts, nonce="nonce-replay-0001"))
    # The captured request, byte for byte.
    rejected(client.open_account("NONCE-1", identity, timestamp=ts, nonce="nonce-replay-0001"),
             401, "1005")
    # A new request that reuses the nonce.
    other = make_identity(23)
    rejected(client.open_account("NONCE-2", other, nonce="nonce-replay-0001"), 401, "1005")
    assert len(class_iii(server)) == 1
    rejected(client.query_opening("NONCE-2"), 404, "1021")


def test_signature_rejections_are_on_the_timeline(client: SignedClient, server: BankServer,
                                                  make_identity: IdentityFactory) -> None:
    rejected(client.open_account("SIG-T-1", make_identity(24), sign=False), 401, "1001")
    events = admin_ok(server.admin.get("/events", params={"kind": "request.rejected"}))
    assert [e["detail"]["code"] for e in events] == ["1001"]


# -- faults -------------------------------------------------------------------------------


def test_busy_serial_fails_first_attempt_and_retry_succeeds(
        client: SignedClient, server: BankServer, make_identity: IdentityFactory) -> None:
    identity = make_identity(30)
    body = rejected(client.open_account("F-BUSY-1", identity), 503, "3028")
    assert body["request_serial"] == "F-BUSY-1"
    assert class_iii(server) == []
    retry = client.open_account("F-BUSY-1", identity)
    data = ok(retry)
    assert "x-idempotent-replay" not in retry.headers
    assert [a["account_no"] for a in class_iii(server)] == [data["account_no"]]


def test_lost_response_was_applied_and_retry_returns_the_same_account(
        client: SignedClient, server: BankServer, make_identity: IdentityFactory) -> None:
    identity = make_identity(31)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client.open_account("F-LOST-1", identity)
    accounts = class_iii(server)
    assert len(accounts) == 1, "the bank commits before it drops the answer"
    retry = client.open_account("F-LOST-1", identity)
    data = ok(retry)
    assert retry.headers.get("x-idempotent-replay") == "true"
    assert data["account_no"] == accounts[0]["account_no"]
    assert len(class_iii(server)) == 1


def test_lost_response_then_query_by_serial_returns_the_account(
        client: SignedClient, server: BankServer, make_identity: IdentityFactory) -> None:
    identity = make_identity(32)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client.open_account("F-LOST-2", identity)
    accounts = class_iii(server)
    assert len(accounts) == 1
    # The platform's recovery after a lost answer: ask for the answer by serial.
    try:
        query = client.query_opening("F-LOST-2")
    except httpx.TransportError as exc:
        pytest.fail("BUG: the -LOST- magic-serial rule also drops the answer of the first "
                    f"GET /accounts/openings/{{serial}} (a read), so recovery fails: {exc!r}")
    assert ok(query)["account_no"] == accounts[0]["account_no"]
    assert len(class_iii(server)) == 1


def test_slow_serial_times_out_the_client_but_the_account_is_opened(
        server: BankServer, make_identity: IdentityFactory) -> None:
    identity = make_identity(33)
    with server.signed(timeout=0.5) as impatient, pytest.raises(httpx.TimeoutException):
        impatient.open_account("F-SLOW-1", identity)
    accounts = class_iii(server)
    assert len(accounts) == 1, "the bank commits before it holds the answer"
    with server.signed(timeout=10.0) as patient:
        data = ok(patient.query_opening("F-SLOW-1"))
        assert data["account_no"] == accounts[0]["account_no"]
        retry = patient.open_account("F-SLOW-1", identity)
        assert ok(retry)["account_no"] == accounts[0]["account_no"]
        assert retry.headers.get("x-idempotent-replay") == "true"
    assert len(class_iii(server)) == 1


def test_profile_error_rate_fails_every_request_until_patched_back(
        client: SignedClient, server: BankServer, make_identity: IdentityFactory) -> None:
    identity = make_identity(34)
    patch_profile(server, {"http_faults": {"rates": {"error": {"rate": 1.0, "code": "3028"}}}})
    rejected(client.open_account("F-RATE-1", identity), 503, "3028")
    rejected(client.open_account("F-RATE-1", identity), 503, "3028")
    assert class_iii(server) == []
    patch_profile(server, {"http_faults": {"rates": {"error": {"rate": 0.0}}}})
    ok(client.open_account("F-RATE-1", identity))
    assert len(class_iii(server)) == 1


def test_rule_matching_operation_refund_fails_refunds_only(
        client: SignedClient, server: BankServer, make_identity: IdentityFactory) -> None:
    no = open_active(server, client, make_identity(35))
    deposit(server, no, "100.00")
    patch_profile(server, {"http_faults": {"rules": [
        {"name": "refunds are down", "match": {"operation": ["refund"]},
         "action": {"error": "3017"}}]}})
    body = rejected(client.refund("F-RULE-1", no, "10.00"), 422, "3017")
    assert body["detail"] == "injected by the profile"
    assert balance(client, no) == "100.00"
    ok(client.open_account("F-RULE-OPEN", make_identity(36)))
    rejected(client.query_refund("F-RULE-1"), 404, "1021")
    events = admin_ok(server.admin.get("/events", params={"kind": "request"}))
    faulted = [e for e in events if e["detail"].get("fault") == "refunds are down"]
    assert [e["detail"]["operation"] for e in faulted] == ["refund"]


def test_reset_forgets_fault_attempt_counters(client: SignedClient, server: BankServer,
                                              make_identity: IdentityFactory) -> None:
    identity = make_identity(37)
    rejected(client.open_account("F-RESET-BUSY-1", identity), 503, "3028")
    admin_ok(server.admin.post("/reset"))
    again = client.open_account("F-RESET-BUSY-1", identity)
    assert (again.status_code, again.json()["code"]) == (503, "3028"), (
        "BUG: after POST /_admin/reset the bank has no record of this serial, yet the "
        "-BUSY- rule treated it as a second attempt (attempt counters survive reset): "
        f"{again.status_code} {again.json()['code']}")


# -- refunds ------------------------------------------------------------------------------


def test_refund_on_pending_images_account_is_3057(client: SignedClient, server: BankServer,
                                                  make_identity: IdentityFactory) -> None:
    no = open_ok(client, "R-PEND-1", make_identity(40))["account_no"]
    assert deposit(server, no, "100.00")["balance"] == "100.00"
    body = rejected(client.refund("R-PEND-R1", no, "10.00"), 422, "3057")
    assert body["request_serial"] == "R-PEND-R1"
    assert balance(client, no) == "100.00"


def test_refund_within_limits_pays_and_can_be_queried(client: SignedClient, server: BankServer,
                                                      make_identity: IdentityFactory) -> None:
    identity = make_identity(41)
    no = open_active(server, client, identity)
    deposit(server, no, "500.00")
    response = client.refund("R-OK-1", no, "120.50", memo="行程退款")
    data = ok(response)
    card = identity["bound_card_number"]
    assert data == {
        "request_serial": "R-OK-1", "account_no": no, "amount": "120.50",
        "bound_card_number": card[:6] + "*" * (len(card) - 10) + card[-4:], "status": "PAID",
        "paid_at": START.isoformat(), "business_date": "2026-01-05",
    }
    account = ok(client.query_account(no))
    assert account["balance"] == "379.50"
    assert account["limits"]["daily_outflow_used"] == "120.50"
    assert account["limits"]["daily_outflow_remaining"] == "1879.50"
    assert account["limits"]["annual_outflow_used"] == "120.50"
    query = client.query_refund("R-OK-1")
    assert ok(query) == data


def test_query_unknown_refund_is_1021(client: SignedClient) -> None:
    rejected(client.query_refund("R-NONE"), 404, "1021")


def test_refund_above_balance_is_3008(client: SignedClient, server: BankServer,
                                      make_identity: IdentityFactory) -> None:
    no = open_active(server, client, make_identity(42))
    deposit(server, no, "50.00")
    rejected(client.refund("R-INS-1", no, "50.01"), 422, "3008")
    assert balance(client, no) == "50.00"
    ok(client.refund("R-INS-2", no, "50.00"))
    assert balance(client, no) == "0.00"


def test_refund_of_zero_is_3062(client: SignedClient, server: BankServer,
                                make_identity: IdentityFactory) -> None:
    no = open_active(server, client, make_identity(43))
    deposit(server, no, "50.00")
    rejected(client.refund("R-ZERO-1", no, "0.00"), 422, "3062")
    rejected(client.refund("R-ZERO-2", no, "1.5"), 400, "1010")
    assert balance(client, no) == "50.00"


def test_daily_outflow_limit_is_3013_and_resets_on_the_next_business_day(
        client: SignedClient, server: BankServer, make_identity: IdentityFactory) -> None:
    no = open_active(server, client, make_identity(44))
    deposit(server, no, "2000.00")
    ok(client.refund("R-DAY-1", no, "1500.00"))
    deposit(server, no, "1500.00")
    assert balance(client, no) == "2000.00"
    body = rejected(client.refund("R-DAY-2", no, "600.00"), 422, "3013")
    assert "daily" in body.get("detail", "")
    ok(client.refund("R-DAY-3", no, "500.00"))  # exactly 2000.00 today is allowed
    rejected(client.refund("R-DAY-4", no, "0.01"), 422, "3013")
    assert balance(client, no) == "1500.00"
    moved = admin_ok(server.admin.post("/clock/next-business-day", json={}))
    assert moved["clock"]["business_date"] == "2026-01-06"
    paid = ok(client.refund("R-DAY-5", no, "600.00"))
    assert paid["business_date"] == "2026-01-06"
    account = ok(client.query_account(no))
    assert account["balance"] == "900.00"
    assert account["limits"]["daily_outflow_used"] == "600.00"
    assert account["limits"]["annual_outflow_used"] == "2600.00"


def test_annual_outflow_limit_is_3013(client: SignedClient, server: BankServer,
                                      make_identity: IdentityFactory) -> None:
    no = open_active(server, client, make_identity(45))
    patch_profile(server, {"bank": {"class_iii": {"annual_outflow": "100.00"}}})
    deposit(server, no, "500.00")
    ok(client.refund("R-YEAR-1", no, "80.00"))
    admin_ok(server.admin.post("/clock/next-business-day", json={}))
    body = rejected(client.refund("R-YEAR-2", no, "30.00"), 422, "3013")
    assert "annual" in body.get("detail", "")
    ok(client.refund("R-YEAR-3", no, "20.00"))
    limits = ok(client.query_account(no))["limits"]
    assert (limits["annual_outflow_limit"], limits["annual_outflow_remaining"]) == ("100.00", "0.00")
    assert balance(client, no) == "400.00"


def test_deposit_above_the_balance_cap_is_3014(client: SignedClient, server: BankServer,
                                               make_identity: IdentityFactory) -> None:
    no = open_active(server, client, make_identity(46))
    response = server.admin.post(f"/accounts/{no}/deposit", json={"amount": "2000.01"})
    rejected(response, 422, "3014")
    deposit(server, no, "1500.00")
    rejected(server.admin.post(f"/accounts/{no}/deposit", json={"amount": "500.01"}), 422, "3014")
    assert deposit(server, no, "500.00")["balance"] == "2000.00"
    assert balance(client, no) == "2000.00"


def test_admin_deposit_errors(server: BankServer, client: SignedClient,
                              make_identity: IdentityFactory) -> None:
    no = open_active(server, client, make_identity(47))
    rejected(server.admin.post("/accounts/6231880000000000000/deposit", json={"amount": "1.00"}),
             404, "3009")
    rejected(server.admin.post(f"/accounts/{no}/deposit", json={"amount": "0.00"}), 422, "3062")
    rejected(server.admin.post(f"/accounts/{no}/deposit", json={"amount": "1.5"}), 422, "3062")
    rejected(server.admin.post(f"/accounts/{no}/deposit", json={}), 400, "1010")
    assert balance(client, no) == "0.00"


def test_platform_freeze_blocks_refunds_and_unfreeze_restores(
        client: SignedClient, server: BankServer, make_identity: IdentityFactory) -> None:
    no = open_active(server, client, make_identity(48))
    deposit(server, no, "100.00")
    frozen = ok(client.freeze(no, "FRZ-1", reason="用户申诉"))
    assert (frozen["frozen"], frozen["status"]) == (True, "ACTIVE")
    rejected(client.refund("R-FRZ-1", no, "10.00"), 422, "3017")
    assert ok(client.query_account(no))["frozen"] is True
    unfrozen = ok(client.unfreeze(no, "UNFRZ-1"))
    assert (unfrozen["frozen"], unfrozen["status"]) == (False, "ACTIVE")
    ok(client.refund("R-FRZ-2", no, "10.00"))
    assert balance(client, no) == "90.00"


def test_admin_freeze_blocks_refunds_and_unfreeze_restores(
        client: SignedClient, server: BankServer, make_identity: IdentityFactory) -> None:
    no = open_active(server, client, make_identity(49))
    deposit(server, no, "100.00")
    assert admin_ok(server.admin.post(f"/accounts/{no}/freeze", json={"reason": "司法冻结"}))["frozen"]
    rejected(client.refund("R-AFRZ-1", no, "10.00"), 422, "3017")
    events = admin_ok(server.admin.get("/events", params={"kind": "account.frozen"}))
    assert [e["detail"]["by"] for e in events] == ["bank"]
    view = admin_ok(server.admin.post(f"/accounts/{no}/unfreeze"))
    assert (view["frozen"], view["status"]) == (False, "ACTIVE")
    ok(client.refund("R-AFRZ-2", no, "10.00"))
    assert balance(client, no) == "90.00"


def test_platform_cannot_lift_the_banks_freeze(
        client: SignedClient, server: BankServer, make_identity: IdentityFactory) -> None:
    no = open_active(server, client, make_identity(51))
    deposit(server, no, "100.00")
    admin_ok(server.admin.post(f"/accounts/{no}/freeze", json={"reason": "司法冻结"}))
    ok(client.freeze(no, "FRZ-B1", reason="风控"))
    still = ok(client.unfreeze(no, "UNFRZ-B1"))
    assert still["frozen"] is True
    rejected(client.refund("R-B-1", no, "10.00"), 422, "3017")
    assert admin_ok(server.admin.get(f"/accounts/{no}"))["frozen_by"] == ["bank"]
    assert admin_ok(server.admin.post(f"/accounts/{no}/unfreeze"))["frozen"] is False
    ok(client.refund("R-B-2", no, "10.00"))


def test_close_needs_zero_balance_then_refunds_are_3018(
        client: SignedClient, server: BankServer, make_identity: IdentityFactory) -> None:
    no = open_active(server, client, make_identity(50))
    deposit(server, no, "10.00")
    rejected(client.close_account(no, "CLOSE-1"), 422, "3060")
    ok(client.refund("R-CL-1", no, "10.00"))
    closed = ok(client.close_account(no, "CLOSE-2"))
    assert closed["status"] == "CLOSED" and closed["closed_at"] == START.isoformat()
    assert ok(client.query_account(no))["status"] == "CLOSED"
    rejected(client.refund("R-CL-2", no, "1.00"), 422, "3018")
    rejected(client.close_account(no, "CLOSE-3"), 422, "3018")
    rejected(client.freeze(no, "FRZ-CL-1"), 422, "3018")
    # The first close's rejection stays the answer to its serial.
    rejected(client.close_account(no, "CLOSE-1"), 422, "3060")


def test_deposit_into_a_closed_account_is_3018(client: SignedClient, server: BankServer,
                                               make_identity: IdentityFactory) -> None:
    no = open_active(server, client, make_identity(54))
    ok(client.close_account(no, "CLOSE-DEP-1"))
    response = server.admin.post(f"/accounts/{no}/deposit", json={"amount": "10.00"})
    assert (response.status_code, response.json().get("code")) == (422, "3018"), (
        "BUG: a deposit into a CLOSED account is accepted; the money is stranded "
        f"(refunds answer 3018): {response.status_code} {response.text}")
    assert balance(client, no) == "0.00"


def test_replayed_refund_serial_never_refunds_twice(
        client: SignedClient, server: BankServer, make_identity: IdentityFactory) -> None:
    no = open_active(server, client, make_identity(51))
    deposit(server, no, "300.00")
    first = client.refund("R-REP-1", no, "100.00")
    ok(first)
    for _ in range(3):
        again = client.refund("R-REP-1", no, "100.00")
        assert again.status_code == 200 and again.headers.get("x-idempotent-replay") == "true"
        assert again.json() == first.json()
    rejected(client.refund("R-REP-1", no, "150.00"), 409, "1020")
    assert balance(client, no) == "200.00"
    refunds = admin_ok(server.admin.get("/events", params={"kind": "refund.paid"}))
    assert len(refunds) == 1


def test_another_platform_cannot_see_the_account(client: SignedClient, server: BankServer,
                                                 make_identity: IdentityFactory,
                                                 baseline_profile: dict[str, Any]) -> None:
    no = open_active(server, client, make_identity(52))
    deposit(server, no, "100.00")
    patch_profile(server, {"platforms": [*baseline_profile["platforms"], OTHER_PLATFORM]})
    with server.signed(app_id=OTHER_PLATFORM["app_id"], secret=OTHER_PLATFORM["secret"]) as other:
        rejected(other.query_account(no), 404, "3009")
        rejected(other.refund("R-OTHER-1", no, "10.00"), 404, "3009")
        rejected(other.freeze(no, "FRZ-OTHER-1"), 404, "3009")
        rejected(other.close_account(no, "CLOSE-OTHER-1"), 404, "3009")
        rejected(other.query_opening("OPEN-ACTIVE-1"), 404, "1021")
        # Its own opening works, and its serials are its own.
        own = ok(other.open_account("OPEN-ACTIVE-1", make_identity(53)))
        assert own["account_no"] != no
        rejected(client.query_account(own["account_no"]), 404, "3009")
    assert balance(client, no) == "100.00"
    assert ok(client.query_account(no))["frozen"] is False


# -- control API --------------------------------------------------------------------------


def test_clock_show(server: BankServer) -> None:
    assert admin_ok(server.admin.get("/clock")) == {
        "now": START.isoformat(), "business_date": "2026-01-05", "mode": "manual",
        "cutover": "00:00", "next_cutover": "2026-01-06T00:00:00+08:00",
        # The daily statement job is always pending, due at the next cutover.
        "pending_jobs": 1, "next_job_due": "2026-01-06T00:00:00+08:00",
    }


def test_clock_advance_by_duration(server: BankServer) -> None:
    moved = admin_ok(server.admin.post("/clock/advance", json={"by": "1h30m"}))
    assert moved["clock"]["now"] == (START + timedelta(hours=1, minutes=30)).isoformat()
    moved = admin_ok(server.admin.post("/clock/advance", json={"by": "PT15M"}))
    assert moved["clock"]["now"] == (START + timedelta(hours=1, minutes=45)).isoformat()
    rejected(server.admin.post("/clock/advance", json={"by": "soon"}), 400, "1010")
    rejected(server.admin.post("/clock/advance", json={}), 400, "1010")
    assert clock_now(server) == START + timedelta(hours=1, minutes=45)


def test_clock_advance_to_time_never_backwards(server: BankServer) -> None:
    moved = admin_ok(server.admin.post("/clock/advance", json={"to": "2026-01-07T15:00"}))
    assert moved["clock"]["now"] == "2026-01-07T15:00:00+08:00"
    assert moved["clock"]["business_date"] == "2026-01-07"
    rejected(server.admin.post("/clock/advance", json={"to": "2026-01-06T15:00:00+08:00"}),
             400, "1010")
    assert clock_now(server) == datetime(2026, 1, 7, 15, 0, tzinfo=CST)


def test_clock_next_business_day(server: BankServer) -> None:
    moved = admin_ok(server.admin.post("/clock/next-business-day", json={}))
    assert moved["clock"]["now"] == "2026-01-06T00:00:00+08:00"
    assert moved["clock"]["business_date"] == "2026-01-06"
    moved = admin_ok(server.admin.post("/clock/next-business-day", json={"at": "09:30"}))
    assert moved["clock"]["now"] == "2026-01-07T09:30:00+08:00"
    assert moved["clock"]["business_date"] == "2026-01-07"


def test_clock_mode_switch_keeps_time_continuous(server: BankServer) -> None:
    admin_ok(server.admin.post("/clock/advance", json={"by": "1h"}))
    before = clock_now(server)
    try:
        view = admin_ok(server.admin.put("/clock/mode", json={"mode": "accelerated:60"}))
        assert view["mode"] == "accelerated:60"
        during = datetime.fromisoformat(view["now"])
        assert before <= during < before + timedelta(minutes=5)
        later = clock_now(server)
        assert later >= during
    finally:
        back = admin_ok(server.admin.put("/clock/mode", json={"mode": "manual"}))
    assert back["mode"] == "manual"
    after = datetime.fromisoformat(back["now"])
    assert later <= after < before + timedelta(minutes=10)
    assert clock_now(server) == after == clock_now(server)  # manual: time stands still
    rejected(server.admin.put("/clock/mode", json={"mode": "warp"}), 400, "1010")
    assert admin_ok(server.admin.get("/profile"))["clock"]["mode"] == "manual"


def test_events_timeline_has_requests_and_money_with_clock_times(
        client: SignedClient, server: BankServer, make_identity: IdentityFactory) -> None:
    no = open_active(server, client, make_identity(60), serial="EV-OPEN-1")
    admin_ok(server.admin.post("/clock/advance", json={"by": "1h"}))
    deposit(server, no, "100.00")
    admin_ok(server.admin.post("/clock/advance", json={"by": "30m"}))
    ok(client.refund("EV-REF-1", no, "40.00"))
    events = admin_ok(server.admin.get("/events"))
    kinds = [e["kind"] for e in events]
    assert {"request", "account.opened", "account.deposit", "refund.paid"} <= set(kinds)
    assert kinds.index("account.opened") < kinds.index("account.deposit") < kinds.index("refund.paid")
    opened = next(e for e in events if e["kind"] == "account.opened")
    assert (opened["ref"], opened["at_us"]) == (no, to_us(START))
    assert opened["detail"] == {"serial": "EV-OPEN-1", "status": "ACTIVE"}
    paid = next(e for e in events if e["kind"] == "refund.paid")
    assert paid["at_us"] == to_us(START + timedelta(hours=1, minutes=30))
    assert paid["detail"] == {"serial": "EV-REF-1", "amount": "40.00"}
    requests = [e for e in events if e["kind"] == "request"]
    assert [(e["detail"]["operation"], e["detail"]["status"], e["detail"]["code"], e["at_us"])
            for e in requests] == [
        ("open_account", 200, "0000", to_us(START)),
        ("refund", 200, "0000", to_us(START + timedelta(hours=1, minutes=30))),
    ]
    prefixed = admin_ok(server.admin.get("/events", params={"kind": "account."}))
    assert {e["kind"] for e in prefixed} == {"account.opened", "account.deposit"}
    since = admin_ok(server.admin.get("/events", params={"since_id": paid["id"]}))
    assert all(e["id"] > paid["id"] for e in since)


def test_reset_wipes_accounts_and_clock(client: SignedClient, server: BankServer,
                                        make_identity: IdentityFactory) -> None:
    open_ok(client, "RESET-1", make_identity(61))
    admin_ok(server.admin.post("/clock/advance", json={"by": "2d"}))
    assert len(class_iii(server)) == 1
    reset = admin_ok(server.admin.post("/reset"))
    assert reset["ok"] is True and reset["clock"]["now"] == START.isoformat()
    assert class_iii(server) == []
    rejected(client.query_opening("RESET-1"), 404, "1021")
    assert len(admin_ok(server.admin.get("/accounts"))) == 3  # clearing, 98 and settlement


def test_admin_unknown_account_is_3009(server: BankServer) -> None:
    rejected(server.admin.get("/accounts/6231880000000000000"), 404, "3009")
    rejected(server.admin.post("/accounts/6231880000000000000/freeze", json={}), 404, "3009")


def test_admin_token_is_required_when_configured(start_bank_server: ServerStarter,
                                                 make_identity: IdentityFactory,
                                                 tmp_path: Path,
                                                 baseline_profile: dict[str, Any]) -> None:
    profile = tmp_path / "active.yaml"
    profile.write_text(json.dumps({**baseline_profile, "bank": {**baseline_profile["bank"],
                                                                "open_active": True}}))
    secured = start_bank_server(admin_token="T0ken-for-tests-0001", profile=profile)
    with httpx.Client(base_url=secured.url, timeout=10.0) as anonymous:
        rejected(anonymous.get("/_admin/clock"), 401, "1030")
        rejected(anonymous.post("/_admin/reset"), 401, "1030")
        rejected(anonymous.get("/_admin/clock", headers={"X-Admin-Token": "wrong"}), 401, "1030")
        good = anonymous.get("/_admin/clock", headers={"X-Admin-Token": "T0ken-for-tests-0001"})
        assert good.status_code == 200 and good.json()["now"] == START.isoformat()
    assert admin_ok(secured.admin.get("/invariants"))["ok"] is True
    # The bank API itself is guarded by signatures, not by the admin token.
    with secured.signed() as signed:
        assert open_ok(signed, "TOKEN-1", make_identity(62))["status"] == "ACTIVE"


def test_serve_off_loopback_without_token_refuses_to_start() -> None:
    result = run_cli("serve", "--ephemeral", "--host", "0.0.0.0", "--http-port", "0", timeout=20)
    assert result.returncode != 0
    assert "--admin-token" in result.stderr
    assert "0.0.0.0" in result.stderr


def test_restart_on_the_same_state_dir_keeps_accounts_clock_and_answers(
        start_bank_server: ServerStarter, make_identity: IdentityFactory, tmp_path: Path) -> None:
    state = tmp_path / "state"
    identity = make_identity(63)
    first = start_bank_server(state_dir=state)
    with first.signed() as signed:
        opened = signed.open_account("RESTART-1", identity)
        no = ok(opened)["account_no"]
    deposit(first, no, "123.45")
    admin_ok(first.admin.post("/clock/advance", json={"by": "3h"}))
    first.stop()
    assert not first.running

    second = start_bank_server(state_dir=state)
    assert clock_now(second) == START + timedelta(hours=3)
    assert [(a["account_no"], a["balance"]) for a in class_iii(second)] == [(no, "123.45")]
    with second.signed() as signed:
        again = signed.open_account("RESTART-1", identity)
        assert again.status_code == 200 and again.headers.get("x-idempotent-replay") == "true"
        assert again.json() == opened.json()
        assert signed.query_opening("RESTART-1").json() == opened.json()
        assert ok(signed.query_account(no))["balance"] == "123.45"
    assert len(class_iii(second)) == 1


def test_ephemeral_state_is_deleted_when_stopped_with_sigterm(
        start_bank_server: ServerStarter) -> None:
    server = start_bank_server()
    state = server.banner_state_dir()
    assert state is not None and state.is_dir()
    server.stop()
    assert not state.exists(), (
        f"BUG: `banksim serve --ephemeral` stopped with SIGTERM (exit {server.process.returncode}) "
        f"left its state directory {state} behind")


# -- CLI client commands ------------------------------------------------------------------


def test_cli_clock_show(server: BankServer) -> None:
    result = run_cli("clock", "show", "--url", server.url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["now"] == START.isoformat()


def test_cli_clock_advance(server: BankServer) -> None:
    result = run_cli("clock", "advance", "1h", "--url", server.url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["clock"]["now"] == (START + timedelta(hours=1)).isoformat()
    assert clock_now(server) == START + timedelta(hours=1)


def test_cli_accounts(client: SignedClient, server: BankServer,
                      make_identity: IdentityFactory) -> None:
    no = open_ok(client, "CLI-1", make_identity(64))["account_no"]
    result = run_cli("accounts", "--kind", "CLASS_III", "--url", server.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["account", "class", "status"]
    assert len(lines) == 2 and lines[1].split()[:5] == [no, "III", "PENDING_IMAGES", "no", "0.00"]


def test_cli_invariants(server: BankServer) -> None:
    result = run_cli("invariants", "--url", server.url)
    assert result.returncode == 0, result.stderr
    assert "invariants hold" in result.stdout
