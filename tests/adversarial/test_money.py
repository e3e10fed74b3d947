# ruff: noqa: F811 - the integration fixtures are imported by name, then requested by name
"""Money and accounts, attacked from outside: signed bank API, SFTP, WeChat v3 and the control API.

Written from the public contract only (README, docs, contracts/): each test is one class of
defect an outside check found, and fails on a bank that has it:

- a refund, close or freeze through the Class III API on the platform's own 98 or
  settlement account (3063, never a 500, never done);
- a frozen 98 account paying out a disbursement batch (3017 per record);
- WeChat days whose refunds exceed their payments (money created across channel + bank):
  the 98 account must receive exactly what the bills net to, with the carry-forward;
- the statement labelling WeChat's settlement as anything but CHANNEL_SETTLEMENT;
- a batch dated the previous business day taken (4009 unless the profile allows it);
- rejection files writing `|` and non-GBK characters other than `_`, or quoting amounts in fen;
- the magic amount 0.28 (system busy, retryable) failing every re-submission; a seeded
  rate that cannot be limited to disbursement.

The ledger invariants (``GET /_admin/invariants``) are checked at the end of every test.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from contracts.codec import decode_file, encode_file, load_layout
from contracts.money import parse_yuan
from contracts.wechat_bill import parse_bill
from tests.integration.conftest import (  # noqa: F401 - fixtures used by name
    BankServer,
    SignedClient,
    bank_server,
    baseline_profile,
    client,
    invariants_guard,
    server,
)
from tests.integration.test_batch_flow import (
    RETURNS,
    SETTLEMENT,
    SUPERVISION,
    Sftp,
    active_funded,
    admin_json,
    advance,
    all_balances,
    open_accounts,
    own_balance,
    patch_profile,
    rec,
    rejection_entry,
    request_file,
    run_batch,
    sftp_port,
)
from tests.integration.test_wechat_channel import MCHID, Wechat

pytestmark = pytest.mark.network


@pytest.fixture
def sftp(server: BankServer) -> Iterator[Sftp]:
    session = Sftp(sftp_port(server))
    try:
        yield session
    finally:
        session.close()


@pytest.fixture(autouse=True)
def books_balance(server: BankServer) -> Iterator[None]:
    """After each test, the bank's own invariants must hold."""
    yield
    result = server.invariants()
    assert result["ok"] is True, result


def code_of(answer: Any) -> tuple[int, str]:
    return answer.status_code, answer.json()["code"]


# -- 1. the platform's own accounts through the Class III API --------------------------------


def test_refund_from_the_platforms_own_accounts_is_a_coded_refusal(
        server: BankServer, client: SignedClient) -> None:
    admin_json(server, "POST", f"/accounts/{SUPERVISION}/deposit", {"amount": "100.00"})
    before = all_balances(server)
    for n, own in enumerate((SUPERVISION, SETTLEMENT)):
        answer = client.refund(f"RF-OWN-{n}", own, "1.00")
        assert code_of(answer) == (422, "3063"), answer.text
        # The stored answer is the refusal, not a half-done refund.
        again = client.query_refund(f"RF-OWN-{n}")
        assert again.json()["code"] == "3063", again.text
    assert all_balances(server) == before


def test_the_class_iii_api_does_not_close_or_freeze_the_platforms_own_accounts(
        server: BankServer, client: SignedClient) -> None:
    closed = client.close_account(SETTLEMENT, "CLS-OWN-1")
    assert code_of(closed) == (422, "3063"), closed.text
    frozen = client.freeze(SUPERVISION, "FRZ-OWN-1", "attack")
    assert code_of(frozen) == (422, "3063"), frozen.text
    for own in (SUPERVISION, SETTLEMENT):
        view = admin_json(server, "GET", f"/accounts/{own}")
        assert (view["status"], view["frozen"]) == ("ACTIVE", False)


def test_a_frozen_98_account_pays_out_nothing(server: BankServer, client: SignedClient,
                                              sftp: Sftp) -> None:
    [user] = active_funded(server, client, 1)
    admin_json(server, "POST", f"/accounts/{SUPERVISION}/freeze", {"reason": "judicial freeze"})
    before = all_balances(server)
    name, data = request_file("DF", 1, [rec("FRZ98-1", user, "10.00"), rec("FRZ98-2", user, "5.00")])
    returned = run_batch(server, sftp, name, data)
    assert [(d["result"], d["code"]) for d in returned.details] == [("F", "3017"), ("F", "3017")]
    assert returned.header["success_amount"] == 0
    assert all_balances(server) == before
    # Lifted: the same money goes (new serials, as the layout requires).
    admin_json(server, "POST", f"/accounts/{SUPERVISION}/unfreeze", {})
    name, data = request_file("DF", 2, [rec("FRZ98-3", user, "10.00")])
    assert [d["code"] for d in run_batch(server, sftp, name, data).details] == ["0000"]
    assert own_balance(server, SUPERVISION) == parse_yuan(before[SUPERVISION]) - 1000


# -- 2. WeChat: refunds above a day's payments ------------------------------------------------------


def _bill_net(wechat: Wechat, day: str) -> int:
    """A day's net from its ALL bill, as a platform reads it: orders - refunds - fees."""
    info = wechat.request("GET", f"/wechat/v3/bill/tradebill?bill_date={day}")
    assert info.status_code == 200, info.text
    url = info.json()["download_url"]
    bill = parse_bill(wechat.request("GET", url[url.index("/wechat/"):]).content)
    fee_fen = bill.summary.fee * 100
    assert fee_fen == fee_fen.to_integral_value()
    return bill.summary.settlement_total_fen - bill.summary.refund_fen - int(fee_fen)


def test_wechat_settlements_equal_the_bills_nets_across_a_negative_day(server: BankServer) -> None:
    wechat = Wechat(server)
    try:
        notify = "http://127.0.0.1:9/notify"  # never answers: notifications are not the point
        start = own_balance(server, SUPERVISION)
        # 01-05: a 100.00 top-up. 01-06: it is refunded in full, nothing paid (net -100.00).
        # 01-07: a 200.00 top-up.
        assert wechat.create("WX-NEG-1", 10000, notify).status_code == 200
        wechat.pay("WX-NEG-1")
        advance(server, "1d")
        refund = server.admin.post("/wechat/orders/WX-NEG-1/refund", json={"amount": "100.00"})
        assert refund.status_code == 200, refund.text
        advance(server, "1d")
        assert wechat.create("WX-NEG-2", 20000, notify).status_code == 200
        wechat.pay("WX-NEG-2")
        admin_json(server, "POST", "/clock/advance", {"to": "2026-01-08T12:00:00"})
        nets = [_bill_net(wechat, d) for d in ("2026-01-05", "2026-01-06", "2026-01-07")]
        assert nets == [9940, -10000, 19880]
        received = own_balance(server, SUPERVISION) - start
        # Cumulative settlements = cumulative bill nets (nothing left carried forward here).
        assert received == sum(nets) == 19820
        rows = admin_json(server, "GET", "/wechat/settlements")
        assert [(r["bill_date"], r["net"], r["carried_in"], r["paid"], r["carried_forward"])
                for r in rows if r["mchid"] == MCHID] == [
            ("2026-01-05", "99.40", "0.00", "99.40", "0.00"),
            ("2026-01-06", "-100.00", "0.00", "0.00", "100.00"),
            ("2026-01-07", "198.80", "100.00", "98.80", "0.00")]
    finally:
        wechat.http.close()


# -- 3. statements name every posting ---------------------------------------------------------------


def test_the_statement_labels_wechat_settlement_channel_settlement(server: BankServer,
                                                                   sftp: Sftp) -> None:
    wechat = Wechat(server)
    try:
        assert wechat.create("WX-ST-1", 5000, "http://127.0.0.1:9/notify").status_code == 200
        wechat.pay("WX-ST-1")
    finally:
        wechat.http.close()
    # Settled 01-06 10:00 (business date 01-06); that day's statement comes at the cutover.
    admin_json(server, "POST", "/clock/advance", {"to": "2026-01-07T01:00:00"})
    name = f"ST_{SUPERVISION}_20260106.txt"
    statement = decode_file(load_layout("statement"), sftp.read(f"/download/statements/{name}"))
    assert [(d["txn_kind"], d["direction"], d["amount"]) for d in statement.details] == [
        ("CHANNEL_SETTLEMENT", "C", 4970)]


# -- 4. the business date of a batch -----------------------------------------------------------------


def test_a_batch_dated_the_previous_business_day_is_refused_4009(
        server: BankServer, client: SignedClient, sftp: Sftp) -> None:
    [user] = active_funded(server, client, 1)
    before = all_balances(server)
    name, data = request_file("DF", 1, [rec("OLD-1", user, "10.00")], day=date(2026, 1, 4))
    sftp.upload_batch(name, data)
    advance(server, "25m")
    assert rejection_entry(server, name)["code"] == "4009"
    assert all_balances(server) == before
    # The documented profile switch tolerates the day before.
    patch_profile(server, {"batches": {"accept_previous_business_day": True}})
    name, data = request_file("DF", 2, [rec("OLD-2", user, "10.00")], day=date(2026, 1, 4))
    assert [d["code"] for d in run_batch(server, sftp, name, data).details] == ["0000"]


# -- 5. rejection files ------------------------------------------------------------------------------


def test_rejection_files_write_unsafe_characters_as_underscore_and_amounts_in_yuan(
        server: BankServer, client: SignedClient, sftp: Sftp) -> None:
    odd = "DF|pay\u00a0\U0001f600.txt"  # a separator, a character GBK lacks, an emoji
    sftp.upload_batch(odd, b"H|whatever|\r\n")
    entry = rejection_entry(server, odd)
    rejected = decode_file(load_layout("rejection"), sftp.read(f"{RETURNS}/{entry['reject_file']}"))
    assert rejected.header["original_file_name"] == "DF_pay__.txt"

    [user] = active_funded(server, client, 1)
    layout = load_layout("disbursement_request")
    header = {"batch_no": "3", "business_date": date(2026, 1, 5), "merchant": "DEMO01", "kind": "DF",
              "record_count": 1, "total_amount": 12345, "account_no": SUPERVISION}
    detail = {"seq": 1, "serial": "TOT-1", "account_no": user.account_no, "account_name": user.name,
              "amount": 1000, "memo": ""}
    name = "DF_DEMO01_20260105_3.txt"
    sftp.upload_batch(name, encode_file(layout, header, [detail]))
    entry = rejection_entry(server, name)
    assert entry["code"] == "4004"
    reason = decode_file(load_layout("rejection"),
                         sftp.read(f"{RETURNS}/{entry['reject_file']}")).header["reason"]
    # The file says amounts in yuan with two decimals: so does its rejection.
    assert "123.45" in reason and "10.00" in reason and "fen" not in reason, reason


# -- 6. retryable magic and scoped rates -------------------------------------------------------------


def test_magic_0_28_clears_on_the_re_submission(server: BankServer, client: SignedClient,
                                                sftp: Sftp) -> None:
    a, b = active_funded(server, client, 2)
    name, data = request_file("DF", 1, [rec("BUSY-1", a, "0.28"), rec("BUSY-2", b, "0.28")])
    assert [d["code"] for d in run_batch(server, sftp, name, data).details] == ["3028", "3028"]
    # Re-submitted with new serials (the layout's rule): the retry of a goes through; b's
    # record in the same batch is b's first retry too.
    name, data = request_file("DF", 2, [rec("BUSY-1R", a, "0.28"), rec("BUSY-2R", b, "0.28")])
    assert [d["code"] for d in run_batch(server, sftp, name, data).details] == ["0000", "0000"]
    # A first attempt for another account still fails busy.
    [c] = open_accounts(client, 1, first=100)
    name, data = request_file("DF", 3, [rec("BUSY-3", c, "0.28")])
    assert [d["code"] for d in run_batch(server, sftp, name, data).details] == ["3028"]


def test_a_rate_can_be_limited_to_disbursement(server: BankServer, client: SignedClient,
                                               sftp: Sftp) -> None:
    people = active_funded(server, client, 10)
    answer = server.admin.patch("/profile", json={"batches": {"rules": [
        {"name": "DF busy 50%", "match": {"kind": "DF"}, "action": {"fail": "3028", "probability": 0.5}}]}})
    assert answer.status_code == 200, answer.text
    name, data = request_file("DF", 1, [rec(f"RT-DF-{i}", p, "20.00") for i, p in enumerate(people)])
    df_codes = [d["code"] for d in run_batch(server, sftp, name, data).details]
    assert set(df_codes) == {"0000", "3028"}, df_codes
    paid = [p for p, code in zip(people, df_codes, strict=True) if code == "0000"]
    name, data = request_file("DK", 2, [rec(f"RT-DK-{i}", p, "10.00") for i, p in enumerate(paid)])
    assert [d["code"] for d in run_batch(server, sftp, name, data).details] == ["0000"] * len(paid)
    # A probability outside 0..1 is refused when the profile is loaded.
    bad = server.admin.patch("/profile", json={"batches": {"rules": [
        {"match": {"kind": "DF"}, "action": {"fail": "3028", "probability": 1.5}}]}})
    assert 400 <= bad.status_code < 500 and "probability" in bad.text, bad.text

