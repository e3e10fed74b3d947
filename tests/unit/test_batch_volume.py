"""The batch engine's volume representation: chunks, one transaction per batch, serials.

What must not change with it: reused serials across batches whatever order they are
processed in, each Class III account's history per record with its memo, the platform
account's statement record by record in file order, a serial twice in one file, and the
compiled record rules answering exactly as the plain ones.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.codec import FileReader, encode_file, load_layout
from simulator.bank import Bank
from simulator.config import BatchSettings
from simulator.domain.outcomes import RecordDecider, RecordFacts, decide_record
from tests.conftest import make_profile
from tests.unit.test_batches import APP, DAY, NAMES, bank, open_accounts, read_return, upload

__all__ = ["bank"]  # the fixture, used by name


def _file(batch: int, records: list[tuple[str, str, str, int, str]]) -> tuple[str, bytes]:
    layout = load_layout("disbursement_request")
    header = {"batch_no": str(batch), "business_date": DAY, "merchant": "DEMO01", "kind": "DF",
              "record_count": len(records), "total_amount": sum(r[3] for r in records),
              "account_no": "98010078801000001"}
    details = [{"seq": i, "serial": serial, "account_no": no, "account_name": name, "amount": fen,
                "memo": memo} for i, (serial, no, name, fen, memo) in enumerate(records, 1)]
    return f"DF_DEMO01_{DAY:%Y%m%d}_{batch}.txt", encode_file(layout, header, details)


def _codes(bank: Bank, batch: str) -> list[str]:
    return [r["code"] for r in bank.files.manifest(APP, batch)["records"]]


def test_a_serial_is_reused_only_once_another_batch_processed_it(bank: Bank) -> None:
    a = open_accounts(bank, 2)
    # Both taken in before either is processed; B is forced through first.
    upload(bank, *_file(31, [("S-1", a[0], NAMES[0], 100, ""), ("S-2", a[1], NAMES[1], 100, "")]))
    upload(bank, *_file(32, [("S-9", a[0], NAMES[0], 100, ""), ("S-2", a[1], NAMES[1], 100, "")]))
    bank.files.force(APP, "32", "process")
    assert _codes(bank, "32") == ["0000", "0000"]
    bank.advance_to(bank.clock.now() + timedelta(hours=1))
    assert _codes(bank, "31") == ["0000", "3051"]
    # A third batch with the serial again, after both: reused.
    upload(bank, *_file(33, [("S-2", a[0], NAMES[0], 100, "")]))
    bank.advance_to(bank.clock.now() + timedelta(hours=1))
    assert _codes(bank, "33") == ["3051"]


def test_a_serial_twice_in_one_file_names_both_lines_across_chunks(bank: Bank) -> None:
    a = open_accounts(bank, 1)
    records = [(f"T{i}", a[0], NAMES[0], 1, "") for i in range(6000)]
    records.append(("T17", a[0], NAMES[0], 1, ""))
    outcome = upload(bank, *_file(34, records))
    assert (outcome["accepted"], outcome["code"], outcome["line"]) == (False, "4006", 6002)
    assert "line 19" in outcome["reason"]
    assert bank.store.scalar("SELECT COUNT(*) FROM record_serials WHERE batch_no = '34'") == 0
    assert bank.store.scalar("SELECT COUNT(*) FROM batch_chunks WHERE batch_no = '34'") == 0


def test_one_transaction_per_batch_with_exact_per_record_history(bank: Bank) -> None:
    a = open_accounts(bank, 3)
    name, data = _file(35, [("M-1", a[0], NAMES[0], 1_000, "充值到账"),
                            ("M-2", a[1], NAMES[1], 2_000, ""),
                            ("M-3", a[2], NAMES[2], 217, "x"),   # 2.17: no magic, succeeds
                            ("M-4", a[0], NAMES[0], 3_000, "第二笔")])
    upload(bank, name, data)
    bank.advance_to(bank.clock.now() + timedelta(hours=1))
    txns = bank.store.all("SELECT id FROM txns WHERE kind = 'disbursement'")
    assert len(txns) == 1
    legs = bank.store.all("SELECT account_no, amount_fen FROM postings WHERE txn_id = ?", (txns[0][0],))
    assert sorted(leg[1] for leg in legs) == [-6_217, 217, 1_000, 2_000, 3_000]
    history = bank.ledger.postings(a[0])
    assert [(p["amount_fen"], p["memo"]) for p in history] == [(3_000, "第二笔"), (1_000, "充值到账")]
    assert [p["memo"] for p in bank.ledger.postings(a[1])] == ["disbursement"]
    assert bank.ledger.balance(a[0]) == 4_000

    bank.advance_to(bank.clock.next_cutover() + timedelta(minutes=1))
    path = bank.outbox.jail(APP) / "download/statements/ST_98010078801000001_20260105.txt"
    with open(path, "rb") as fh:
        reader = FileReader(load_layout("statement"), fh)
        lines = [d for _, d in reader]
    batch_lines = [(d["direction"], d["amount"], d["counterparty_account"], d["memo"], d["reference"])
                   for d in lines if d["txn_kind"] == "DISBURSEMENT"]
    ref = name[:-4]
    assert batch_lines == [("D", 1_000, a[0], "充值到账", ref), ("D", 2_000, a[1], "disbursement", ref),
                           ("D", 217, a[2], "x", ref), ("D", 3_000, a[0], "第二笔", ref)]
    assert reader.header["debit_count"] == 4 and reader.header["debit_amount"] == 6_217


def test_a_return_file_spanning_chunks_is_whole_and_in_order(bank: Bank) -> None:
    a = open_accounts(bank, 1)
    records = [(f"F{i}", a[0], NAMES[0], 1, "") for i in range(5000)]
    name, data = _file(36, records)
    upload(bank, name, data)
    bank.advance_to(bank.clock.now() + timedelta(hours=1))
    header, details, trailer = read_return(bank, name.replace(".txt", "_RET.txt"))
    assert header["record_count"] == len(details) == 5000
    assert trailer is not None and trailer["line_count"] == 5002
    assert [d["seq"] for d in details] == list(range(1, 5001))


@settings(max_examples=200, deadline=None)
@given(amount=st.integers(1, 400), position=st.integers(1, 5), serial=st.sampled_from(["VIP1", "S1", "X"]),
       name=st.sampled_from(["张三", "王五"]), kind=st.sampled_from(["DF", "DK"]),
       seed=st.integers(0, 3))
def test_the_compiled_rules_answer_as_the_plain_ones(amount: int, position: int, serial: str, name: str,
                                                     kind: str, seed: int) -> None:
    profile = make_profile({"batches": {
        "rules": [*make_profile().as_dict()["batches"]["rules"],
                  {"name": "third", "match": {"position": 3, "kind": "DF"}, "action": {"fail": "3028"}},
                  {"name": "not vip", "match": {"account_name": "王五"}, "not": {"serial": "VIP.*"},
                   "action": {"fail": "3031", "reason": "户名不符"}}],
        "rates": {"3028": 0.2, "3008": 0.1}}})
    s: BatchSettings = profile.batches
    decider = RecordDecider(s, seed, kind, APP, "B1")
    facts = RecordFacts(kind, APP, "B1", serial, position, "6231880000000000001", name, amount)
    assert decider(serial, position, "6231880000000000001", name, amount) == decide_record(s, seed, facts)

