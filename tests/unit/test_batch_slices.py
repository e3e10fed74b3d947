"""A batch processed in slices gives the same files as one processed whole.

The server processes a batch a chunk or so at a time (``Scheduler.slice_seconds``),
committing each slice with its progress and answering requests in between. Here the
slices are forced to one chunk each (``slice_seconds = 0``) and compared byte for byte
with the whole-batch run: return file, the 98 account's statement (which lists the batch
record by record, once, although the 98 account has one posting per chunk), balances;
a change between slices (an account frozen) is seen by the records after it.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from contracts.codec import FileWriter, load_layout
from simulator.bank import Bank
from simulator.bankfiles import RETURNS, STATEMENTS
from tests.conftest import make_profile

APP = "demo-platform"
OWN = "98010078801000001"
RECORDS = 20_000  # five chunks of the file


def _bank(tmp: Path) -> Bank:
    platform = {**make_profile().as_dict()["platforms"][0], "supervision_opening_balance": "60000.00"}
    profile = make_profile({"bank": {"open_active": True}, "platforms": [platform],
                            "batches": {"rules": [{"name": "magic 0.17", "match": {"amount": "0.17"},
                                                   "action": {"fail": "3017"}}]}})
    bank = Bank(profile, tmp, group_commit=True)
    with bank.store.transaction():
        for i in range(40):
            bank.ledger.create_account(account_no=f"62318800000000{i:05d}", kind="CLASS_III", name=f"客户{i}",
                                       opened_us=0, app_id=APP, balance_cap_fen=50_000 if i < 5 else 200_000,
                                       image_status="APPROVED", opening_serial=f"S{i}")
    bank.flush()
    return bank


def _upload(bank: Bank, tmp: Path) -> str:
    day: date = bank.clock.business_date()
    name = f"DF_DEMO01_{day:%Y%m%d}_1.txt"
    amounts = [17 if i % 997 == 0 else 100 + (i * 37) % 900 for i in range(RECORDS)]
    path = bank.outbox.jail(APP) / "upload" / "batches" / name
    with open(path, "wb") as fh:
        writer = FileWriter(load_layout("disbursement_request"), fh)
        writer.write_header({"batch_no": "1", "business_date": day, "merchant": "DEMO01", "kind": "DF",
                             "record_count": RECORDS, "total_amount": sum(amounts), "account_no": OWN})
        for i, amount in enumerate(amounts):
            writer.write_detail({"seq": i + 1, "serial": f"S{i + 1:08d}",
                                 "account_no": f"62318800000000{i % 40:05d}", "account_name": f"客户{i % 40}",
                                 "amount": amount, "memo": "代发"})
    assert bank.file_complete(APP, "batches", name, path)["accepted"]
    return name


def _run(tmp: Path, *, sliced: bool, freeze_after: int | None = None) -> tuple[bytes, bytes, list[int], int]:
    bank = _bank(tmp)
    name = _upload(bank, tmp)
    bank.scheduler.slice_seconds = 0.0 if sliced else None
    bank.advance_to(bank.clock.now() + timedelta(minutes=11))
    slices = 1
    while bank.scheduler.in_progress() is not None:
        view = bank.files.batches(APP)[0]
        assert view["state"] == "PROCESSING" and 0 < view["processed_records"] < RECORDS
        if freeze_after is not None and slices == freeze_after:
            bank.admin_set_frozen("6231880000000000007", True)
        assert not bank.invariants()  # every slice commits balanced and whole
        bank.scheduler.run_due()
        bank.flush()
        slices += 1
    assert bank.files.batches(APP)[0]["state"] == "PROCESSED"
    bank.advance_to(bank.clock.next_cutover() + timedelta(minutes=1))
    jail = bank.outbox.jail(APP)
    returned = (jail / RETURNS / name.replace(".txt", "_RET.txt")).read_bytes()
    [statement] = [p for p in (jail / STATEMENTS).iterdir() if p.name.startswith(f"ST_{OWN}_")]
    balances = [int(bank.store.scalar("SELECT balance_fen FROM accounts WHERE account_no = ?",
                                      (f"62318800000000{i:05d}",))) for i in range(40)]
    assert not bank.invariants()
    bank.close()
    return returned, statement.read_bytes(), balances, slices


def test_sliced_processing_writes_the_same_files_as_one_pass(tmp_path: Path) -> None:
    whole = _run(tmp_path / "whole", sliced=False)
    sliced = _run(tmp_path / "sliced", sliced=True)
    assert whole[3] == 1 and sliced[3] >= 4  # it did go in several slices
    assert sliced[0] == whole[0]
    assert sliced[1] == whole[1]
    assert sliced[2] == whole[2]
    text = whole[0].decode("gbk")
    # The mix the comparison covers: successes, the profile's rule, caps and the 98 running dry.
    for code in ("|S|0000|", "|F|3017|", "|F|3014|", "|F|3008|"):
        assert code in text, code
    # The statement lists every successful record once (and the header counts them).
    successes = text.count("|S|0000|")
    lines = [line.split("|") for line in whole[1].decode("gbk").splitlines()]
    assert int(lines[0][8]) == successes  # the header's debit count
    assert sum(1 for f in lines if f[0] == "D" and f[3] == "D") == successes


def test_a_change_between_slices_is_seen_by_the_records_after_it(tmp_path: Path) -> None:
    returned = _run(tmp_path / "frozen", sliced=True, freeze_after=2)[0].decode("gbk").splitlines()
    mine = [line for line in returned if "|6231880000000000007|" in line]
    codes = [line.split("|")[8] for line in mine]
    first_frozen = codes.index("3017")
    assert "0000" in codes[:first_frozen]  # paid while it was not frozen
    assert all(code == "3017" for code in codes[first_frozen:])  # refused from the slice after on
