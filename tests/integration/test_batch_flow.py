"""Batch files end to end against a real `banksim serve`: SFTP in, control API clock, SFTP out.

One server per module (``bank_server``), reset before each test (``server``). Files go up
over a real asyncssh SFTP session (temporary name, then rename), the virtual clock is
moved through the control API (never a sleep), and what comes back is read over SFTP and
parsed with the contract's codec; the ledger is read through the signed bank API and the
control API. Every test ends with the ledger invariants checked (conftest).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from contracts.codec import (
    DecodedFile,
    FileFormatError,
    decode_file,
    encode_file,
    identify,
    load_layout,
    rejection_file_name,
    return_file_name,
)
from contracts.money import format_fen, parse_yuan
from simulator.testing.bank_api import SftpSession
from tests.integration.conftest import BankServer, SignedClient, make_identity

pytestmark = pytest.mark.network


APP = "demo-platform"
USER = "demo"
PASSWORD = "banksim-dev-sftp"
MERCHANT = "DEMO01"
DAY = date(2026, 1, 5)
SUPERVISION = "98010078801000001"
SETTLEMENT = "31010078801000001"
NO_SUCH_ACCOUNT = "6200000000000000000"  # 19 digits, not the bank's BIN: never opened
SFTP_TIMEOUT_S = 60.0
RETURNS = "/download/returns"
BATCHES = "/upload/batches"

# Valid image signatures, above the profile's images.min_bytes (1024).
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8


# -- SFTP: a blocking facade over one asyncssh session ---------------------------------------


def sftp_port(server: BankServer) -> int:
    for path in server.workdir.glob("port-*.json"):
        data = json.loads(path.read_text("utf-8"))
        if data.get("http") == server.port:
            return int(data["sftp"])
    raise AssertionError(f"no port file for {server.url}")


class Sftp(SftpSession):
    """One SFTP session as the platform (``demo``), driven synchronously from the test."""

    def __init__(self, port: int) -> None:
        super().__init__("127.0.0.1", port, username=USER, password=PASSWORD, timeout=SFTP_TIMEOUT_S)

    def upload_batch(self, name: str, data: bytes) -> None:
        """The documented way: a temporary name, then RENAME to the final name."""
        self.upload(f"{BATCHES}/{name}", data)

    def put(self, local: Path, remote: str) -> None:
        self._run(self.client.put(str(local), remote))

    def returns(self) -> list[str]:
        return self.listdir(RETURNS)


@pytest.fixture
def sftp(server: BankServer) -> Iterator[Sftp]:
    session = Sftp(sftp_port(server))
    try:
        yield session
    finally:
        session.close()


# -- bank set-up and inspection -----------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    account_no: str
    name: str


@dataclass(frozen=True)
class Rec:
    serial: str
    account_no: str
    name: str
    fen: int


def open_accounts(client: SignedClient, count: int, first: int = 0) -> list[Person]:
    people = []
    for n in range(first, first + count):
        identity = make_identity(n)
        answer = client.open_account(f"OPEN-{n}", identity)
        assert answer.status_code == 200, answer.text
        data = answer.json()["data"]
        people.append(Person(data["account_no"], identity["name"]))
    assert len({p.name for p in people}) == count
    return people


def upload_images(sftp: Sftp, account_no: str) -> None:
    sftp.write(f"/upload/images/{account_no}_front.jpg", JPEG)
    sftp.write(f"/upload/images/{account_no}_back.png", PNG)


def account(client: SignedClient, account_no: str) -> dict[str, Any]:
    answer = client.query_account(account_no)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def balance(client: SignedClient, account_no: str) -> int:
    return parse_yuan(account(client, account_no)["balance"])


def admin_json(server: BankServer, method: str, path: str, body: Any = None,
               **params: Any) -> Any:
    answer = server.admin.request(method, path, json=body, params=params or None)
    assert answer.status_code == 200, f"{method} {path}: {answer.status_code} {answer.text}"
    return answer.json()


def own_balance(server: BankServer, account_no: str) -> int:
    return parse_yuan(admin_json(server, "GET", f"/accounts/{account_no}")["balance"])


def all_balances(server: BankServer) -> dict[str, str]:
    rows = admin_json(server, "GET", "/accounts", limit=10_000)
    return {r["account_no"]: r["balance"] for r in rows}


def deposit(server: BankServer, account_no: str, amount: str) -> None:
    admin_json(server, "POST", f"/accounts/{account_no}/deposit", {"amount": amount})


def advance(server: BankServer, by: str) -> None:
    admin_json(server, "POST", "/clock/advance", {"by": by})


def patch_profile(server: BankServer, patch: dict[str, Any]) -> dict[str, Any]:
    profile: dict[str, Any] = admin_json(server, "PATCH", "/profile", patch)
    return profile


def reset(server: BankServer) -> None:
    assert admin_json(server, "POST", "/reset")["ok"] is True


def batches(server: BankServer) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = admin_json(server, "GET", "/batches")
    return rows


def batch_state(server: BankServer, batch_no: int) -> str:
    [row] = [b for b in batches(server) if b["batch_no"] == str(batch_no)]
    return str(row["state"])


def manifest(server: BankServer, batch_no: int) -> dict[str, Any]:
    data: dict[str, Any] = admin_json(server, "GET", f"/batches/{APP}/{batch_no}")
    return data


def active_funded(server: BankServer, client: SignedClient, count: int,
                  funds: str = "10000.00") -> list[Person]:
    """Accounts that open ACTIVE (no image review) and a funded 98 account."""
    patch_profile(server, {"bank": {"open_active": True}})
    people = open_accounts(client, count)
    deposit(server, SUPERVISION, funds)
    return people


# -- request files ------------------------------------------------------------------------


def request_file(kind: str, batch: int, records: list[Rec], *, count: int | None = None,
                 total: int | None = None, day: date = DAY) -> tuple[str, bytes]:
    layout = load_layout("disbursement_request" if kind == "DF" else "withholding_request")
    header = {"batch_no": str(batch), "business_date": day, "merchant": MERCHANT, "kind": kind,
              "record_count": len(records) if count is None else count,
              "total_amount": sum(r.fen for r in records) if total is None else total,
              "account_no": SUPERVISION if kind == "DF" else SETTLEMENT}
    details = [{"seq": i, "serial": r.serial, "account_no": r.account_no,
                "account_name": r.name, "amount": r.fen, "memo": "充值到账"}
               for i, r in enumerate(records, 1)]
    return f"{kind}_{MERCHANT}_{day:%Y%m%d}_{batch}.txt", encode_file(layout, header, details)


def rec(serial: str, person: Person, yuan: str, name: str | None = None) -> Rec:
    return Rec(serial, person.account_no, name or person.name, parse_yuan(yuan))


def read_return(sftp: Sftp, request_name: str) -> DecodedFile:
    return decode_file(load_layout("return"), sftp.read(f"{RETURNS}/{return_file_name(request_name)}"))


def run_batch(server: BankServer, sftp: Sftp, name: str, data: bytes) -> DecodedFile:
    """Upload, advance past processing and return delays, read the return file."""
    sftp.upload_batch(name, data)
    advance(server, "25m")
    return read_return(sftp, name)


def check_return_against_manifest(ret: DecodedFile, m: dict[str, Any]) -> None:
    """Every record of the return file is what the manifest says, and the totals add up."""
    assert len(ret.details) == len(m["records"]) == m["record_count"]
    for d, r in zip(ret.details, m["records"], strict=True):
        got = (d["seq"], d["serial"], d["account_no"], d["account_name"], d["amount"],
               d["result"], d["code"], d["reason"], d["bank_serial"])
        want = (r["seq"], r["serial"], r["account_no"], r["account_name"], parse_yuan(r["amount"]),
                r["result"], r["code"], r["reason"], r["bank_serial"])
        assert got == want, f"record {d['seq']}"
        assert (d["result"] == "S") == (d["code"] == "0000")
    ok = [d for d in ret.details if d["result"] == "S"]
    failed = [d for d in ret.details if d["result"] == "F"]
    h = ret.header
    assert (h["batch_no"], h["kind"], h["merchant"]) == (m["batch_no"], m["kind"], MERCHANT)
    assert h["record_count"] == len(ret.details)
    assert h["total_amount"] == sum(d["amount"] for d in ret.details) == parse_yuan(m["total"])
    assert (h["success_count"], h["success_amount"]) == (len(ok), sum(d["amount"] for d in ok))
    assert (h["fail_count"], h["fail_amount"]) == (len(failed), sum(d["amount"] for d in failed))
    assert (m["success_count"], parse_yuan(m["success_amount"])) == (len(ok), h["success_amount"])
    assert ret.trailer is not None and ret.trailer["line_count"] == len(ret.details) + 2
    assert len(set(d["bank_serial"] for d in ret.details)) == len(ret.details)


def rejection_entry(server: BankServer, uploaded: str) -> dict[str, Any]:
    """The one ``/_admin/rejections`` entry for an uploaded file name."""
    listed = [r for r in admin_json(server, "GET", "/rejections", app_id=APP)
              if r["file_name"] == uploaded]
    assert len(listed) == 1, f"/_admin/rejections has {len(listed)} entries for {uploaded!r}"
    entry: dict[str, Any] = listed[0]
    return entry


def check_rejection(server: BankServer, sftp: Sftp, uploaded: str, code: str,
                    line: int | None) -> DecodedFile:
    """The rejection is listed by the control API, and its file is in download/returns,
    named and filled in as rejection.yaml says."""
    entry = rejection_entry(server, uploaded)
    assert (entry["code"], entry["line"]) == (code, line), entry
    assert entry["reject_file"] in sftp.returns()
    rejected = decode_file(load_layout("rejection"), sftp.read(f"{RETURNS}/{entry['reject_file']}"))
    h = rejected.header
    assert (h["original_file_name"], h["code"]) == (uploaded, code)
    assert [(d["line_no"], d["code"]) for d in rejected.details] == ([(line, code)] if line else [])
    # The contract's name for it (codec.rejection_file_name), at the rejection time.
    at = datetime.fromisoformat(entry["at"]).replace(tzinfo=None)
    assert entry["reject_file"] == rejection_file_name(uploaded, at)
    assert h["rejected_at"] == at.replace(microsecond=0)
    # Batch number and business date "from the file name or header, empty when neither
    # could be read" (rejection.yaml).
    parsed = identify(uploaded)
    if parsed is not None:
        assert (h["batch_no"], h["business_date"]) == (str(parsed[1]["batch"]), parsed[1]["date"])
    elif not re.search(r"_[0-9]{8}_[0-9]+\.", uploaded):  # nothing there to read at all
        assert (h["batch_no"] or None, h["business_date"]) == (None, None), h
    return rejected


# -- 1. the "done when" flow --------------------------------------------------------------------


def test_disbursement_end_to_end(server: BankServer, client: SignedClient, sftp: Sftp) -> None:
    # Fund the 98 account through the profile: PATCH, then reset (the opening balance is
    # posted when the account is created).
    platform = admin_json(server, "GET", "/profile")["platforms"][0]
    patch_profile(server, {"platforms": [{**platform, "supervision_opening_balance": "3000.00"}]})
    reset(server)
    assert own_balance(server, SUPERVISION) == 300_000

    people = open_accounts(client, 7)
    assert {account(client, p.account_no)["status"] for p in people} == {"PENDING_IMAGES"}
    ok1, ok2, wrong_name, frozen, no_images, capped, at_cap = people
    for p in people:
        if p is not no_images:
            upload_images(sftp, p.account_no)
    assert sftp.listdir("/upload/images") == sorted(
        f"{p.account_no}_{side}" for p in people if p is not no_images
        for side in ("back.png", "front.jpg"))
    advance(server, "29m")
    assert account(client, ok1.account_no)["status"] == "PENDING_IMAGES"  # review not yet due
    advance(server, "1m")
    for p in people:
        view = account(client, p.account_no)
        if p is no_images:
            assert (view["status"], view["image_status"]) == ("PENDING_IMAGES", "NONE")
        else:
            assert (view["status"], view["image_status"]) == ("ACTIVE", "APPROVED"), view
    answer = client.freeze(frozen.account_no, "FRZ-1", "风控")
    assert answer.status_code == 200, answer.text

    records = [
        rec("DF1-01", ok1, "100.00"),                          # S
        rec("DF1-02", ok2, "200.50"),                          # S
        Rec("DF1-03", NO_SUCH_ACCOUNT, "赵无", 1_000),          # 3009 no such account
        rec("DF1-04", wrong_name, "10.00", name="冒名顶替"),      # 3031 name mismatch
        rec("DF1-05", frozen, "10.00"),                        # 3017 frozen (ledger)
        rec("DF1-06", no_images, "10.00"),                     # 3061 images not approved
        rec("DF1-07", capped, "2000.01"),                      # 3014 over the balance cap
        rec("DF1-08", at_cap, "2000.00"),                      # S: exactly the cap
        rec("DF1-09", ok1, "0.17"),                            # 3017 by the magic rule
        rec("DF1-10", ok2, "0.28"),                            # 3028 by the magic rule
        rec("DF1-11", ok2, "800.00"),                          # 3008: the 98 account has 699.50
        rec("DF1-12", ok1, "0.50"),                            # S: not a magic amount
    ]
    expected = ["0000", "0000", "3009", "3031", "3017", "3061", "3014", "0000", "3017", "3028",
                "3008", "0000"]
    name, data = request_file("DF", 1, records)
    sftp.upload_batch(name, data)
    assert sftp.listdir(BATCHES) == [name]
    assert batch_state(server, 1) == "ACCEPTED"
    assert sftp.returns() == []

    advance(server, "10m")
    assert batch_state(server, 1) == "PROCESSED"
    assert sftp.returns() == []  # the return file waits for batches.return_delay
    advance(server, "14m59s")
    assert sftp.returns() == []
    advance(server, "1s")
    ret_name = return_file_name(name)
    assert sftp.returns() == [ret_name]
    [listed] = batches(server)
    assert (listed["state"], listed["return_files"]) == ("RETURNED", [ret_name])

    ret = read_return(sftp, name)
    m = manifest(server, 1)
    check_return_against_manifest(ret, m)
    assert [d["code"] for d in ret.details] == expected
    assert [r["decided_by"] for r in m["records"]][8:10] == [
        "magic 0.17: account frozen", "magic 0.28: system busy"]
    assert {r["decided_by"] for i, r in enumerate(m["records"]) if i not in (8, 9)} == {"ledger"}
    assert ret.header["business_date"] == DAY

    # The ledger: each Class III holds exactly its successful records; the 98 account paid them.
    paid = {p.account_no: 0 for p in people}
    for d in ret.details:
        if d["result"] == "S":
            paid[d["account_no"]] += d["amount"]
    assert paid[ok1.account_no] == 10_050 and paid[at_cap.account_no] == 200_000
    for p in people:
        assert balance(client, p.account_no) == paid[p.account_no], p
    assert own_balance(server, SUPERVISION) == 300_000 - ret.header["success_amount"] == 69_900


# -- 2. withholding after disbursement on the same day --------------------------------------


def test_withholding_after_disbursement_same_day(server: BankServer, client: SignedClient,
                                                 sftp: Sftp) -> None:
    a, b, c, closing, frozen, revoked = active_funded(server, client, 6)
    df_name, df = request_file("DF", 1, [
        rec("DF-A", a, "500.00"), rec("DF-B", b, "300.00"), rec("DF-C", c, "100.00"),
        rec("DF-E", frozen, "50.00"), rec("DF-F", revoked, "80.00")])
    df_ret = run_batch(server, sftp, df_name, df)
    assert [d["code"] for d in df_ret.details] == ["0000"] * 5

    assert client.freeze(frozen.account_no, "FRZ-E").status_code == 200
    closed = client.close_account(closing.account_no, "CLOSE-D")
    assert closed.status_code == 200 and closed.json()["data"]["status"] == "CLOSED", closed.text
    admin_json(server, "POST", f"/accounts/{revoked.account_no}/agreement", {"active": False})

    dk_name, dk = request_file("DK", 2, [
        rec("DK-A", a, "200.00"),          # S
        rec("DK-B", b, "300.01"),          # 3008 insufficient (300.00)
        rec("DK-E", frozen, "10.00"),      # 3017 frozen
        rec("DK-D", closing, "1.00"),      # 3018 closed
        rec("DK-F", revoked, "10.00"),     # 3043 agreement revoked
        rec("DK-C", c, "100.00"),          # S: the whole balance
    ])
    dk_ret = run_batch(server, sftp, dk_name, dk)
    check_return_against_manifest(dk_ret, manifest(server, 2))
    assert [d["code"] for d in dk_ret.details] == ["0000", "3008", "3017", "3018", "3043", "0000"]
    assert admin_json(server, "GET", "/clock")["business_date"] == DAY.isoformat()

    assert own_balance(server, SETTLEMENT) == 30_000
    assert own_balance(server, SUPERVISION) == 1_000_000 - 103_000
    assert {p.name: balance(client, p.account_no) for p in (a, b, c, closing, frozen, revoked)} == {
        a.name: 30_000, b.name: 30_000, c.name: 0, closing.name: 0, frozen.name: 5_000,
        revoked.name: 8_000}
    assert account(client, a.account_no)["limits"]["daily_outflow_used"] == "200.00"
    assert account(client, b.account_no)["limits"]["daily_outflow_used"] == "0.00"


# -- 3. re-submission -----------------------------------------------------------------------------


def test_failed_records_resubmitted_with_new_serials(server: BankServer, client: SignedClient,
                                                     sftp: Sftp) -> None:
    ok, frozen, pending = open_accounts(client, 3)
    upload_images(sftp, ok.account_no)
    upload_images(sftp, frozen.account_no)
    advance(server, "30m")
    assert client.freeze(frozen.account_no, "FRZ-1").status_code == 200
    deposit(server, SUPERVISION, "1000.00")

    name1, data1 = request_file("DF", 1, [rec("R-1", ok, "100.00"), rec("R-2", frozen, "50.00"),
                                          rec("R-3", pending, "30.00")])
    first = run_batch(server, sftp, name1, data1)
    assert [d["code"] for d in first.details] == ["0000", "3017", "3061"]
    failed = [d for d in first.details if d["result"] == "F"]

    # Fix the causes: the platform unfreezes; the missing ID-card images arrive and pass review.
    assert client.unfreeze(frozen.account_no, "UNFRZ-1").status_code == 200
    upload_images(sftp, pending.account_no)
    advance(server, "30m")
    assert account(client, pending.account_no)["status"] == "ACTIVE"

    again = [Rec(f"{d['serial']}-RE1", d["account_no"], d["account_name"], d["amount"]) for d in failed]
    name2, data2 = request_file("DF", 2, again)
    second = run_batch(server, sftp, name2, data2)
    check_return_against_manifest(second, manifest(server, 2))
    assert [(d["serial"], d["code"]) for d in second.details] == [("R-2-RE1", "0000"), ("R-3-RE1", "0000")]
    assert not {d["bank_serial"] for d in second.details} & {d["bank_serial"] for d in first.details}
    assert (balance(client, frozen.account_no), balance(client, pending.account_no)) == (5_000, 3_000)

    # A serial of an earlier batch (failed or not) is a duplicate: 3051, no money moves.
    before = all_balances(server)
    name3, data3 = request_file("DF", 3, [rec("R-2", frozen, "50.00"), rec("R-1", ok, "1.00")])
    third = run_batch(server, sftp, name3, data3)
    check_return_against_manifest(third, manifest(server, 3))
    assert [d["code"] for d in third.details] == ["3051", "3051"]
    assert all_balances(server) == before
    assert own_balance(server, SUPERVISION) == 100_000 - 18_000


# -- 4. bad input over SFTP -------------------------------------------------------------------------


def _swap(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, (old, data)
    return data.replace(old, new)


def _bad_file(case: str, people: list[Person]) -> tuple[str, bytes]:
    p, q = people
    good = [rec("BAD-1", p, "100.00"), rec("BAD-2", q, "200.00")]
    name, data = request_file("DF", 5, good)
    if case == "not GBK":
        return name, _swap(data, p.name.encode("gbk"), b"\xff\xfe")
    if case == "no header":
        return name, data[data.index(b"\r\n") + 2:]
    if case == "header count":
        return request_file("DF", 5, good, count=3)
    if case == "header total":
        return request_file("DF", 5, good, total=30_001)
    if case == "duplicate serial":
        return request_file("DF", 5, [good[0], Rec("BAD-1", q.account_no, q.name, 20_000)])
    if case == "negative amount":
        return name, _swap(data, b"|100.00|", b"|-100.00|")
    if case == "zero amount":
        return name, _swap(data, b"|100.00|", b"|0.00|")
    if case == "three decimals":
        return name, _swap(data, b"|100.00|", b"|100.005|")
    if case == "account format":
        return name, _swap(data, p.account_no.encode(), b"62318800001")
    if case == "empty":
        return name, b""
    if case == "unknown kind":
        return "XX_DEMO01_20260105_5.txt", data
    if case == "not a batch name":
        return "payout_20260105.csv", data
    if case == "batch number with leading zeros":  # the example name of docs/sftp.md
        return "DF_DEMO01_20260105_001.txt", data
    if case == "non-ASCII name":
        return "代发文件.txt", data
    if case == "long name":
        return "p" * 120 + ".csv", data
    raise AssertionError(case)


BAD_INPUTS = [  # (case, code, line of the uploaded file at fault)
    ("not GBK", "4001", 2),
    ("no header", "4002", 1),
    ("header count", "4003", 1),
    ("header total", "4004", 1),
    ("duplicate serial", "4006", 3),
    ("negative amount", "4007", 2),
    ("zero amount", "4007", 2),
    ("three decimals", "4007", 2),
    ("account format", "4012", 2),
    ("empty", "4010", None),
    ("unknown kind", "4008", None),
    ("not a batch name", "4008", None),
    ("batch number with leading zeros", "4008", None),
    ("non-ASCII name", "4008", None),
    ("long name", "4008", None),
]


@pytest.mark.parametrize(("case", "code", "line"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_file_is_rejected_and_moves_no_money(server: BankServer, client: SignedClient,
                                                 sftp: Sftp, case: str, code: str,
                                                 line: int | None) -> None:
    people = active_funded(server, client, 2)
    before = all_balances(server)
    name, data = _bad_file(case, people)
    sftp.upload_batch(name, data)
    advance(server, "1h")
    assert batches(server) == []
    assert all_balances(server) == before
    # The server goes on serving: the next (good) upload is accepted and processed.
    good_name, good = request_file("DF", 6, [rec("GOOD-1", people[0], "1.00")])
    ret = run_batch(server, sftp, good_name, good)
    assert [d["code"] for d in ret.details] == ["0000"]
    assert all_balances(server) != before  # (the good batch did move money)
    check_rejection(server, sftp, name, code, line)


def test_same_batch_number_again(server: BankServer, client: SignedClient, sftp: Sftp) -> None:
    people = active_funded(server, client, 2)
    name, data = request_file("DF", 7, [rec("DUP-1", people[0], "10.00")])
    sftp.upload_batch(name, data)
    assert batch_state(server, 7) == "ACCEPTED"
    before = all_balances(server)

    # The same name again: SFTP refuses to overwrite an accepted file, both ways.
    sftp.write(f"{BATCHES}/{name}.part", data)
    with pytest.raises(asyncssh.SFTPFailure, match="file exists"):
        sftp.rename(f"{BATCHES}/{name}.part", f"{BATCHES}/{name}")
    with pytest.raises(asyncssh.SFTPFailure, match="file exists"):
        sftp.write(f"{BATCHES}/{name}", data)

    # The same batch number under another name: yesterday's date (refused for its date
    # first, 4009: only the bank's current business date is taken), or the DK prefix (DF
    # and DK share one sequence of batch numbers per platform).
    yesterday = date(2026, 1, 4)
    other_day, other_data = request_file("DF", 7, [rec("DUP-2", people[1], "10.00")], day=yesterday)
    sftp.upload_batch(other_day, other_data)
    assert rejection_entry(server, other_day)["code"] == "4009"
    dk_name, dk = request_file("DK", 7, [rec("DUP-3", people[1], "10.00")])
    sftp.upload_batch(dk_name, dk)
    check_rejection(server, sftp, dk_name, "4005", 1)

    assert all_balances(server) == before
    assert [b["file_name"] for b in batches(server)] == [name]
    advance(server, "25m")
    assert sorted(sftp.returns()) == sorted([return_file_name(name),
                                             f"{other_day[:-4]}_REJ.txt", f"{dk_name[:-4]}_REJ.txt"])
    assert [d["code"] for d in read_return(sftp, name).details] == ["0000"]
    check_rejection(server, sftp, other_day, "4009", 1)


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_200_mb_of_garbage_is_rejected_without_loading_it(server: BankServer, client: SignedClient,
                                                          sftp: Sftp, tmp_path: Path) -> None:
    people = active_funded(server, client, 1)
    before = all_balances(server)
    garbage = tmp_path / "garbage.bin"
    rng = random.Random(20260105)
    with garbage.open("wb") as fh:
        for _ in range(200):
            fh.write(rng.randbytes(1 << 20))
    name = "DF_DEMO01_20260105_77.txt"
    pid = server.process.pid
    sftp.put(garbage, f"{BATCHES}/{name}.part")
    garbage.unlink()
    started = time.monotonic()
    sftp.rename(f"{BATCHES}/{name}.part", f"{BATCHES}/{name}")  # intake runs within the rename
    took = time.monotonic() - started
    assert took < 5.0, f"intake took {took:.1f} s for a file that fails on line 1"
    uploaded = admin_json(server, "GET", f"/files/{APP}")["upload/batches"]
    assert uploaded == [{"name": name, "size": 200 << 20}]  # all of it arrived
    code = rejection_entry(server, name)["code"]
    assert code in ("4001", "4002")  # not GBK, or no header: either way line 1
    check_rejection(server, sftp, name, code, 1)
    hwm_mib = _vm_hwm_kib(pid) / 1024
    assert hwm_mib < 300, f"the server's peak RSS reached {hwm_mib:.0f} MiB"
    assert all_balances(server) == before and batches(server) == []
    good_name, good = request_file("DF", 78, [rec("AFTER-1", people[0], "1.00")])
    assert [d["code"] for d in run_batch(server, sftp, good_name, good).details] == ["0000"]


@pytest.mark.parametrize("path", [
    "../x.txt", "../../x.txt", "/../x.txt", "/upload/batches/../../../x.txt",
    "/upload/batches/../../x.txt", "/x.txt", "/tmp/x.txt", "/etc/x.txt", "/download/returns/x.txt",
    "/upload/batches/sub/x.txt",
])
def test_paths_outside_the_upload_directories_are_refused(server: BankServer, sftp: Sftp,
                                                          path: str) -> None:
    refusals = (asyncssh.SFTPPermissionDenied, asyncssh.SFTPNoSuchFile, asyncssh.SFTPFailure)
    with pytest.raises(refusals):
        sftp.write(path, b"H|1|\r\n")
    sftp.write(f"{BATCHES}/ok.part", b"H|1|\r\n")
    with pytest.raises(refusals):
        sftp.rename(f"{BATCHES}/ok.part", path)
    state = server.banner_state_dir()
    assert state is not None
    assert not [p for p in state.parent.rglob("x.txt")], "a file escaped"
    refused = admin_json(server, "GET", "/events", kind="sftp.refused")
    assert len(refused) >= 2
    assert admin_json(server, "GET", "/events", kind="sftp.upload_complete") == []
    assert admin_json(server, "GET", "/rejections") == []
    # The session and the server go on.
    name, data = request_file("DF", 1, [])
    sftp.upload_batch(name, data)
    assert batch_state(server, 1) == "ACCEPTED"


# -- 5. return-file faults ----------------------------------------------------------------------


def test_return_file_faults(server: BankServer, client: SignedClient, sftp: Sftp) -> None:
    people = active_funded(server, client, 3)
    patch_profile(server, {"batches": {"file_faults": [
        {"name": "late", "match": {"batch_no": "41"}, "action": {"late": "1h"}},
        {"name": "never", "match": {"batch_no": "42"}, "action": {"never": True}},
        {"name": "twice", "match": {"batch_no": "43"}, "action": {"twice": True}},
        {"name": "truncated", "match": {"batch_no": "44"}, "action": {"truncated": True}},
        {"name": "missing", "match": {"batch_no": "45"}, "action": {"missing_records": 1}},
        {"name": "odd name", "match": {"batch_no": "46"}, "action": {"unexpected_name": True}},
    ]}})
    names = {}
    for batch in range(40, 47):
        name, data = request_file("DF", batch, [rec(f"F{batch}-{i}", p, f"{batch}.0{i}")
                                                for i, p in enumerate(people)])
        sftp.upload_batch(name, data)
        names[batch] = name
    stem = {batch: name[:-4] for batch, name in names.items()}
    advance(server, "25m")
    assert {b["batch_no"]: b["state"] for b in batches(server)} == {
        "40": "RETURNED", "41": "PROCESSED", "42": "PROCESSED", "43": "RETURNED",
        "44": "RETURNED", "45": "RETURNED", "46": "RETURNED"}
    assert sftp.returns() == sorted([
        f"{stem[40]}_RET.txt", f"{stem[43]}_RET.txt", f"{stem[43]}_RET_R1.txt",
        f"{stem[44]}_RET.txt", f"{stem[45]}_RET.txt", f"{stem[46]}_ret.TXT"])

    normal = read_return(sftp, names[40])
    check_return_against_manifest(normal, manifest(server, 40))
    # twice: a second, identical copy.
    first = sftp.read(f"{RETURNS}/{stem[43]}_RET.txt")
    assert sftp.read(f"{RETURNS}/{stem[43]}_RET_R1.txt") == first
    check_return_against_manifest(decode_file(load_layout("return"), first), manifest(server, 43))
    # truncated: cut inside a line, no trailer; the codec refuses it with 4002.
    truncated = sftp.read(f"{RETURNS}/{stem[44]}_RET.txt")
    assert b"T|END|" not in truncated
    with pytest.raises(FileFormatError) as refused:
        decode_file(load_layout("return"), truncated)
    assert refused.value.code == "4002"
    # missing records: the header counts more records than there are detail lines.
    missing = read_return(sftp, names[45])
    assert (missing.header["record_count"], len(missing.details)) == (3, 2)
    assert missing.trailer is not None and missing.trailer["line_count"] == 4
    # unexpected name: the same content under <stem>_ret.TXT.
    odd = decode_file(load_layout("return"), sftp.read(f"{RETURNS}/{stem[46]}_ret.TXT"))
    check_return_against_manifest(odd, manifest(server, 46))

    advance(server, "59m59s")
    assert f"{stem[41]}_RET.txt" not in sftp.returns()
    advance(server, "1s")
    late = read_return(sftp, names[41])
    check_return_against_manifest(late, manifest(server, 41))
    advance(server, "1d")  # never is never
    assert not [n for n in sftp.returns() if n.startswith(stem[42])]
    assert batch_state(server, 42) == "PROCESSED"
    assert manifest(server, 42)["file_fault"]["never"] is True


# -- 6. determinism -----------------------------------------------------------------------------------


def test_same_seed_same_file_same_return_bytes(server: BankServer, client: SignedClient) -> None:
    patch_profile(server, {"batches": {"rates": {"3028": 0.3}}})
    outputs: list[tuple[bytes, DecodedFile]] = []
    for _ in range(2):
        reset(server)
        people = active_funded(server, client, 8)
        name, data = request_file("DF", 9, [rec(f"DET-{i}", p, f"{10 + i}.00")
                                            for i, p in enumerate(people)])
        session = Sftp(sftp_port(server))
        try:
            decoded = run_batch(server, session, name, data)
            outputs.append((session.read(f"{RETURNS}/{return_file_name(name)}"), decoded))
        finally:
            session.close()
    assert outputs[0][0] == outputs[1][0]
    codes = [d["code"] for d in outputs[0][1].details]
    assert "3028" in codes and "0000" in codes, codes


# -- 7. statements -----------------------------------------------------------------------------------


def test_statement_after_the_day_cutover(server: BankServer, client: SignedClient, sftp: Sftp) -> None:
    people = active_funded(server, client, 3, funds="5000.00")
    name, data = request_file("DF", 1, [rec("ST-1", people[0], "120.00"),
                                        rec("ST-2", people[1], "0.17"),
                                        rec("ST-3", people[2], "33.33")])
    ret = run_batch(server, sftp, name, data)
    assert [d["code"] for d in ret.details] == ["0000", "3017", "0000"]
    assert sftp.listdir("/download/statements") == []

    moved = admin_json(server, "POST", "/clock/next-business-day")
    assert moved["clock"]["business_date"] == "2026-01-06"
    closing = own_balance(server, SUPERVISION)
    assert closing == 500_000 - 12_000 - 3_333
    statement_name = f"ST_{SUPERVISION}_{DAY:%Y%m%d}.txt"
    assert statement_name in sftp.listdir("/download/statements")
    st = decode_file(load_layout("statement"),
                     sftp.read(f"/download/statements/{statement_name}"))
    h = st.header
    assert (h["account_no"], h["business_date"]) == (SUPERVISION, DAY)
    assert (h["opening_balance"], h["closing_balance"]) == (0, closing)
    assert [(d["direction"], d["amount"], d["txn_kind"]) for d in st.details] == [
        ("C", 500_000, "DEPOSIT"), ("D", 12_000, "DISBURSEMENT"), ("D", 3_333, "DISBURSEMENT")]
    assert [d["counterparty_account"] for d in st.details][1:] == [people[0].account_no,
                                                                    people[2].account_no]
    running = h["opening_balance"]
    for d in st.details:
        running += d["amount"] if d["direction"] == "C" else -d["amount"]
        assert d["balance_after"] == running
    assert running == closing
    assert (h["credit_count"], h["credit_amount"], h["debit_count"], h["debit_amount"]) == (
        1, 500_000, 2, 15_333)
    assert st.trailer is not None and st.trailer["line_count"] == len(st.details) + 2
    settlement = decode_file(load_layout("statement"), sftp.read(
        f"/download/statements/ST_{SETTLEMENT}_{DAY:%Y%m%d}.txt"))
    assert settlement.details == [] and settlement.header["closing_balance"] == 0
    assert format_fen(closing) == admin_json(server, "GET", f"/accounts/{SUPERVISION}")["balance"]
    # statement.yaml: "the batch file stem (DF_DEMO01_20260105_1) for batch postings".
    assert [d["reference"] for d in st.details][1:] == [name[:-4]] * 2


def test_accelerated_clock_runs_due_jobs_by_itself(server: BankServer, client: SignedClient) -> None:
    """Without any advance call, a server in accelerated mode processes and returns a batch.

    The one place a test waits real time: the point is that the clock moves by itself. At
    3600 bank-seconds per second the 25 minutes of delays take under half a second; the
    wait is bounded at 15 s.
    """
    people = active_funded(server, client, 2)
    name, data = request_file("DF", 91, [rec("ACC-1", people[0], "12.00"),
                                         rec("ACC-2", people[1], "0.17")])
    uploaded = server.admin.post(f"/files/{APP}/batches/{name}", content=data,
                                 headers={"Content-Type": "application/octet-stream"})
    assert uploaded.status_code == 200 and uploaded.json()["accepted"], uploaded.text
    admin_json(server, "PUT", "/clock/mode", {"mode": "accelerated:3600"})
    try:
        deadline = time.monotonic() + 15
        while batch_state(server, 91) != "RETURNED":
            assert time.monotonic() < deadline, f"no return after 15 s: {batches(server)}"
            time.sleep(0.05)
    finally:
        admin_json(server, "PUT", "/clock/mode", {"mode": "manual"})
    returns = {f["name"] for f in admin_json(server, "GET", f"/files/{APP}")["download/returns"]}
    assert return_file_name(name) in returns
    codes = [r["code"] for r in manifest(server, 91)["records"]]
    assert codes == ["0000", "3017"]
    assert balance(client, people[0].account_no) == 1200
