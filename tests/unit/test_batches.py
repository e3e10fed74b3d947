"""The batch engine in process: intake, processing on the clock, return files, manifest."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from contracts.codec import FileReader, encode_file, load_layout
from simulator.bank import Bank
from simulator.domain.identity import make_card_number, make_id_number
from tests.conftest import make_profile

APP = "demo-platform"
DAY = date(2026, 1, 5)
NAMES = ["张三", "李四", "王五", "赵六", "钱七", "孙八"]


@pytest.fixture
def bank(tmp_path: Path) -> Any:
    b = Bank(make_profile({"bank": {"open_active": True},
                           "platforms": [{**make_profile().as_dict()["platforms"][0],
                                          "supervision_opening_balance": "100000.00"}]}),
             tmp_path / "state")
    yield b
    violations = b.invariants()
    b.close()
    assert not violations, violations


def open_accounts(bank: Bank, n: int) -> list[str]:
    numbers = []
    for i in range(n):
        answer = bank.open_account(APP, {
            "request_serial": f"O{i}", "name": NAMES[i % len(NAMES)],
            "id_number": make_id_number("310101", date(1990, 1, 1), i),
            "mobile": "13800138000", "bound_card_number": make_card_number("622202", 19, i),
            "bound_card_kind": "DEBIT_I"})
        assert answer.status == 200, answer.body
        numbers.append(answer.body["data"]["account_no"])
    return numbers


def request_file(kind: str, batch: int, records: list[tuple[str, str, int]], *,
                 count: int | None = None, total: int | None = None, day: date = DAY) -> tuple[str, bytes]:
    layout = load_layout("disbursement_request" if kind == "DF" else "withholding_request")
    account = "98010078801000001" if kind == "DF" else "31010078801000001"
    header = {"batch_no": str(batch), "business_date": day, "merchant": "DEMO01", "kind": kind,
              "record_count": len(records) if count is None else count,
              "total_amount": sum(r[2] for r in records) if total is None else total,
              "account_no": account}
    details = [{"seq": i, "serial": f"{kind}{batch}R{i}", "account_no": no, "account_name": name,
                "amount": fen, "memo": "充值到账"} for i, (no, name, fen) in enumerate(records, 1)]
    return f"{kind}_DEMO01_{day:%Y%m%d}_{batch}.txt", encode_file(layout, header, details)


def upload(bank: Bank, name: str, data: bytes) -> dict[str, Any]:
    target = bank.outbox.jail(APP) / "upload" / "batches" / name
    target.write_bytes(data)
    return bank.file_complete(APP, "batches", name, target)


def read_return(bank: Bank, name: str) -> tuple[dict[str, Any], list[dict[str, Any]], Any]:
    with open(bank.outbox.jail(APP) / "download" / "returns" / name, "rb") as fh:
        reader = FileReader(load_layout("return"), fh)
        details = [d for _, d in reader]
        return reader.header, details, reader.trailer


def test_disbursement_end_to_end_with_a_frozen_account(bank: Bank) -> None:
    accounts = open_accounts(bank, 5)
    bank.admin_set_frozen(accounts[2], True, "司法冻结")
    name, data = request_file("DF", 1, [(no, NAMES[i], 10_000 + i) for i, no in enumerate(accounts)])
    assert upload(bank, name, data)["accepted"]
    bank.advance_to(bank.clock.now() + timedelta(minutes=10))
    assert bank.files.batches()[0]["state"] == "PROCESSED"
    assert not (bank.outbox.jail(APP) / "download/returns" / name.replace(".txt", "_RET.txt")).exists()
    bank.advance_to(bank.clock.now() + timedelta(minutes=15))
    header, details, trailer = read_return(bank, name.replace(".txt", "_RET.txt"))
    assert (header["success_count"], header["fail_count"]) == (4, 1)
    assert [d["code"] for d in details] == ["0000", "0000", "3017", "0000", "0000"]
    assert trailer["line_count"] == 7
    assert bank.ledger.balance(accounts[0]) == 10_000
    assert bank.ledger.balance(accounts[2]) == 0
    assert bank.ledger.balance("98010078801000001") == 10_000_000 - (10_000 + 10_001 + 10_003 + 10_004)
    manifest = bank.files.manifest(APP, "1")
    assert [r["decided_by"] for r in manifest["records"]][2] == "ledger"


def test_same_seed_same_file_same_return_bytes(tmp_path: Path) -> None:
    outputs = []
    for run in range(2):
        b = Bank(make_profile({"bank": {"open_active": True}, "batches": {"rates": {"3028": 0.3}},
                               "platforms": [{**make_profile().as_dict()["platforms"][0],
                                              "supervision_opening_balance": "1000.00"}]}),
                 tmp_path / f"s{run}")
        accounts = open_accounts(b, 6)
        name, data = request_file("DF", 7, [(no, NAMES[i], 100 + i) for i, no in enumerate(accounts)])
        upload(b, name, data)
        b.advance_to(b.clock.now() + timedelta(hours=1))
        returned = b.outbox.jail(APP) / "download/returns" / name.replace(".txt", "_RET.txt")
        outputs.append(returned.read_bytes())
        assert b.invariants() == []
        b.close()
    assert outputs[0] == outputs[1]
    assert b"|3028|" in outputs[0]


@pytest.mark.parametrize(("mutate", "code"), [
    ({"count": 3}, "4003"),
    ({"total": 1}, "4004"),
])
def test_header_mismatch_rejects_the_file_and_moves_no_money(bank: Bank, mutate: dict[str, int],
                                                              code: str) -> None:
    accounts = open_accounts(bank, 2)
    name, data = request_file("DF", 2, [(no, NAMES[i], 500) for i, no in enumerate(accounts)], **mutate)
    outcome = upload(bank, name, data)
    assert (outcome["accepted"], outcome["code"]) == (False, code)
    rejection = bank.outbox.jail(APP) / "download/returns" / name.replace(".txt", "_REJ.txt")
    with open(rejection, "rb") as fh:
        assert FileReader(load_layout("rejection"), fh).header["code"] == code
    assert bank.files.batches() == []
    assert bank.store.scalar("SELECT COUNT(*) FROM batch_records") == 0
    assert bank.ledger.balance(accounts[0]) == 0


def test_bad_inputs_each_get_their_code(bank: Bank) -> None:
    accounts = open_accounts(bank, 2)
    name, good = request_file("DF", 3, [(no, NAMES[i], 500) for i, no in enumerate(accounts)])
    name33, good33 = request_file("DF", 33, [(no, NAMES[i], 500) for i, no in enumerate(accounts)])
    cases = {
        "empty": ("DF_DEMO01_20260105_31.txt", b"", "4010"),
        "unknown kind": ("XX_DEMO01_20260105_32.txt", good, "4008"),
        # A detail line that is not GBK (0xFF never starts a GBK character).
        "not GBK": (name33, good33.replace("张三".encode("gbk"), b"\xff\xfe"), "4001"),
        "garbage": ("DF_DEMO01_20260105_34.txt", b"\x00garbage" * 100, "4002"),
        # Binary noise: its first "line" ends in a bare LF, a structure error on line 1.
        "binary": ("DF_DEMO01_20260105_36.txt", bytes(range(256)) * 4, "4002"),
        "bare LF": ("DF_DEMO01_20260105_3.txt", good.replace(b"\r\n", b"\n"), "4002"),
        "wrong date": (*request_file("DF", 35, [(accounts[0], "张三", 5)], day=date(2026, 3, 1)), "4009"),
    }
    for label, (file_name, data, code) in cases.items():
        outcome = upload(bank, file_name, data)
        assert (outcome["accepted"], outcome["code"]) == (False, code), label
    assert upload(bank, name, good)["accepted"]
    # The same batch number again (SFTP refuses the same name, so it arrives as another file).
    target = bank.outbox.jail(APP) / "upload" / "batches" / "copy"
    target.write_bytes(good)
    assert bank.file_complete(APP, "batches", name, target)["code"] == "4005"
    assert len(bank.files.rejections()) == len(cases) + 1


def test_withholding_after_disbursement_with_limits_and_agreement(bank: Bank) -> None:
    accounts = open_accounts(bank, 3)
    name, data = request_file("DF", 10, [(no, NAMES[i], 150_000) for i, no in enumerate(accounts)])
    upload(bank, name, data)
    bank.advance_to(bank.clock.now() + timedelta(hours=1))
    bank.set_agreement(accounts[1], False)
    dk_name, dk = request_file("DK", 11, [(accounts[0], NAMES[0], 100_000), (accounts[1], NAMES[1], 100),
                                          (accounts[2], NAMES[2], 200_000)])
    assert upload(bank, dk_name, dk)["accepted"]
    bank.advance_to(bank.clock.now() + timedelta(hours=1))
    _, details, _ = read_return(bank, dk_name.replace(".txt", "_RET.txt"))
    assert [d["code"] for d in details] == ["0000", "3043", "3008"]
    assert bank.ledger.balance("31010078801000001") == 100_000
    dk2_name, dk2 = request_file("DK", 12, [(accounts[0], NAMES[0], 50_000)])
    upload(bank, dk2_name, dk2)
    bank.advance_to(bank.clock.now() + timedelta(hours=1))
    _, details, _ = read_return(bank, dk2_name.replace(".txt", "_RET.txt"))
    assert details[0]["code"] == "0000"
    # 1500.00 withheld today; with money on the account, 600.00 more passes 2000.00 a day.
    bank.deposit(accounts[0], "1000.00")
    dk3_name, dk3 = request_file("DK", 13, [(accounts[0], NAMES[0], 60_000), (accounts[0], NAMES[0], 50_000)])
    upload(bank, dk3_name, dk3)
    bank.advance_to(bank.clock.now() + timedelta(hours=1))
    _, details, _ = read_return(bank, dk3_name.replace(".txt", "_RET.txt"))
    assert [d["code"] for d in details] == ["3013", "0000"]
    assert bank.ledger.outflow_used(accounts[0], bank.clock.business_date()) == (200_000, 200_000)


def test_magic_amounts_and_reused_serials(bank: Bank) -> None:
    accounts = open_accounts(bank, 2)
    name, data = request_file("DF", 20, [(accounts[0], NAMES[0], 17), (accounts[1], NAMES[1], 28)])
    upload(bank, name, data)
    bank.advance_to(bank.clock.now() + timedelta(hours=1))
    manifest = bank.files.manifest(APP, "20")
    assert [(r["code"], r["decided_by"]) for r in manifest["records"]] == [
        ("3017", "magic 0.17: account frozen"), ("3028", "magic 0.28: system busy")]
    layout = load_layout("disbursement_request")
    header = {"batch_no": "21", "business_date": DAY, "merchant": "DEMO01", "kind": "DF",
              "record_count": 1, "total_amount": 500, "account_no": "98010078801000001"}
    reused = encode_file(layout, header, [{"seq": 1, "serial": "DF20R1", "account_no": accounts[0],
                                           "account_name": NAMES[0], "amount": 500, "memo": ""}])
    upload(bank, "DF_DEMO01_20260105_21.txt", reused)
    bank.advance_to(bank.clock.now() + timedelta(hours=1))
    assert bank.files.manifest(APP, "21")["records"][0]["code"] == "3051"


def test_file_faults_late_never_twice_truncated(bank: Bank) -> None:
    accounts = open_accounts(bank, 2)
    bank.patch_profile({"batches": {"file_faults": [
        {"match": {"batch_no": "41"}, "action": {"never": True}},
        {"match": {"batch_no": "42"}, "action": {"twice": True}},
        {"match": {"batch_no": "43"}, "action": {"truncated": True}},
        {"match": {"batch_no": "44"}, "action": {"missing_records": 1}},
        {"match": {"batch_no": "45"}, "action": {"unexpected_name": True}},
        {"match": {"batch_no": "46"}, "action": {"late": "3h"}},
    ]}})
    for batch in range(41, 47):
        name, data = request_file("DF", batch, [(no, NAMES[i], 100) for i, no in enumerate(accounts)])
        upload(bank, name, data)
    bank.advance_to(bank.clock.now() + timedelta(hours=1))
    returns = {f["name"] for f in bank.outbox.listing(APP)["download/returns"]}
    assert "DF_DEMO01_20260105_41_RET.txt" not in returns
    assert {"DF_DEMO01_20260105_42_RET.txt", "DF_DEMO01_20260105_42_RET_R1.txt"} <= returns
    assert "DF_DEMO01_20260105_45_ret.TXT" in returns
    assert "DF_DEMO01_20260105_46_RET.txt" not in returns
    bank.advance_to(bank.clock.now() + timedelta(hours=3))
    late = {f["name"] for f in bank.outbox.listing(APP)["download/returns"]}
    assert "DF_DEMO01_20260105_46_RET.txt" in late
    header, details, _ = read_return(bank, "DF_DEMO01_20260105_44_RET.txt")
    assert header["record_count"] == 2 and len(details) == 1
    truncated = (bank.outbox.jail(APP) / "download/returns/DF_DEMO01_20260105_43_RET.txt").read_bytes()
    assert not truncated.endswith(b"\r\n")


def test_statements_at_cutover(bank: Bank) -> None:
    accounts = open_accounts(bank, 1)
    name, data = request_file("DF", 50, [(accounts[0], NAMES[0], 12_345)])
    upload(bank, name, data)
    bank.advance_to(bank.clock.next_cutover() + timedelta(minutes=1))
    path = bank.outbox.jail(APP) / "download/statements/ST_98010078801000001_20260105.txt"
    with open(path, "rb") as fh:
        reader = FileReader(load_layout("statement"), fh)
        lines = [d for _, d in reader]
    assert reader.header["opening_balance"] == 0
    assert reader.header["closing_balance"] == 10_000_000 - 12_345
    assert [(d["direction"], d["amount"], d["txn_kind"]) for d in lines] == [
        ("C", 10_000_000, "DEPOSIT"), ("D", 12_345, "DISBURSEMENT")]


def test_an_unexpected_intake_failure_still_answers_with_a_rejection(
        bank: Bank, monkeypatch: pytest.MonkeyPatch) -> None:
    import simulator.filedesk as filedesk

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("disk went away")

    monkeypatch.setattr(filedesk, "accept_file", broken)
    accounts = open_accounts(bank, 1)
    name, data = request_file("DF", 60, [(accounts[0], NAMES[0], 100)])
    outcome = upload(bank, name, data)
    assert (outcome["accepted"], outcome["code"]) == (False, "4002")
    assert "OSError" in outcome["reason"]
    assert (bank.outbox.jail(APP) / "download/returns" / name.replace(".txt", "_REJ.txt")).exists()
