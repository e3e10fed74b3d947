"""One side of the batch benchmark, in its own process so its peak memory is its own.

    python -m bench.batch_worker banksim  FILE ACCOUNTS STATE_DIR
    python -m bench.batch_worker baseline FILE ACCOUNTS STATE_DIR

``banksim``: a Bank on STATE_DIR takes the completed upload FILE, the clock is advanced past
the processing and return delays, and the run ends when the return file is written.
``baseline``: parse FILE with the same codec, and for each record one INSERT and one balance
UPDATE, all in one SQLite transaction (WAL, synchronous=NORMAL): the least any bank must do.
Prints one JSON line: seconds, records, success count, peak RSS.
"""

from __future__ import annotations

import json
import resource
import shutil
import sqlite3
import sys
import time
from datetime import timedelta
from pathlib import Path

APP = "demo-platform"


def _accounts(path: Path) -> list[tuple[str, str]]:
    return [tuple(pair) for pair in json.loads(path.read_text(encoding="utf-8"))]  # type: ignore[misc]


def run_banksim(file: Path, accounts: Path, state: Path) -> dict[str, object]:
    from simulator.bank import Bank
    from simulator.config import load_profile, merge_patch, profile_from_dict

    base = load_profile(None).as_dict()
    platform = {**base["platforms"][0], "supervision_opening_balance": "90000000.00"}
    profile = profile_from_dict(merge_patch(base, {"bank": {"open_active": True},
                                                   "batches": {"rules": []},
                                                   "platforms": [platform]}))
    bank = Bank(profile, state, group_commit=True)
    with bank.store.transaction():
        for i, (no, name) in enumerate(_accounts(accounts)):
            bank.ledger.create_account(account_no=no, kind="CLASS_III", name=name, opened_us=0,
                                       app_id=APP, balance_cap_fen=200_000,
                                       image_status="APPROVED", opening_serial=f"B{i}")
    bank.flush()
    target = bank.outbox.jail(APP) / "upload" / "batches" / file.name
    shutil.copy(file, target)
    start = time.perf_counter()
    outcome = bank.file_complete(APP, "batches", file.name, target)
    bank.advance_to(bank.clock.now() + timedelta(hours=2))
    bank.flush()
    seconds = time.perf_counter() - start
    batch = bank.files.batches()[0]
    violations = bank.invariants()
    bank.close()
    return {"seconds": seconds, "records": outcome.get("records"), "state": batch["state"],
            "success": batch["success_count"], "return_files": batch["return_files"],
            "violations": len(violations)}


def run_baseline(file: Path, accounts: Path, state: Path) -> dict[str, object]:
    from contracts.codec import FileReader, load_layout

    state.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(state / "baseline.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE accounts (account_no TEXT PRIMARY KEY, balance INTEGER) WITHOUT ROWID")
    conn.execute("CREATE TABLE postings (id INTEGER PRIMARY KEY, account_no TEXT, amount INTEGER)")
    conn.executemany("INSERT INTO accounts VALUES (?, 0)", [(no,) for no, _ in _accounts(accounts)])
    start = time.perf_counter()
    count = 0
    with open(file, "rb") as fh:
        reader = FileReader(load_layout("disbursement_request"), fh)
        conn.execute("BEGIN")
        for _, d in reader:
            conn.execute("INSERT INTO postings(account_no, amount) VALUES (?, ?)",
                         (d["account_no"], d["amount"]))
            conn.execute("UPDATE accounts SET balance = balance + ? WHERE account_no = ?",
                         (d["amount"], d["account_no"]))
            count += 1
        conn.execute("COMMIT")
    seconds = time.perf_counter() - start
    conn.close()
    return {"seconds": seconds, "records": count, "success": count}


def main() -> None:
    side, file, accounts, state = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    result = (run_banksim if side == "banksim" else run_baseline)(file, accounts, state)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()
