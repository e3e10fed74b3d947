"""Re-submission rules, uploads with SFTP down, deadlines: the payout steps with fake peers."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from contracts.codec import encode_file, load_layout
from platform_client.clock import CST, FixedClock
from platform_client.config import ClientConfig
from platform_client.context import Context
from platform_client.errors import BankApiError, SftpUnavailable, StepRefused
from platform_client.onboarding import register_user
from platform_client.payouts import (
    check_deadlines,
    disburse,
    original_progress,
    poll_returns,
    resubmit,
    upload_pending,
)
from tests.platform_client.bank import identity
from tests.platform_client.scenario import paid_and_reconciled, records

DAY = "2026-01-04"
SUPERVISION = "98010078801000001"


class FakeSftp:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.down = False

    def __enter__(self) -> FakeSftp:
        if self.down:
            raise SftpUnavailable("connection refused")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None

    def upload(self, directory: str, name: str, data: bytes) -> None:
        self.files[f"{directory}/{name}"] = data

    def listdir(self, directory: str) -> list[str]:
        prefix = directory.rstrip("/") + "/"
        return sorted(k[len(prefix):] for k in self.files if k.startswith(prefix))

    def read(self, path: str) -> bytes:
        return self.files[path]


class FakeBank:
    def __init__(self) -> None:
        self.accounts: dict[str, dict[str, Any]] = {}

    def query_account(self, account_no: str) -> dict[str, Any]:
        return self.accounts[account_no]

    def close(self) -> None:
        return None


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Context, FakeSftp, FakeBank, FixedClock]:
    clock = FixedClock(datetime(2026, 1, 5, 9, 0, tzinfo=CST))
    ctx = Context.create(ClientConfig(store_path=str(tmp_path / "p.db")), clock=clock)
    sftp, bank = FakeSftp(), FakeBank()
    ctx.sftp = lambda: sftp  # type: ignore[method-assign, assignment, return-value]
    ctx.bank = bank  # type: ignore[assignment]
    for i, user in enumerate(("a", "b", "c"), start=61):
        register_user(ctx, user, identity(i))
        account_no = f"62318800000001000{i}"
        with ctx.store.transaction():
            ctx.store.execute("UPDATE users SET account_no = ? WHERE user_id = ?", (account_no, user))
        bank.accounts[account_no] = {"status": "ACTIVE", "frozen": False, "name": identity(i)["name"],
                                     "image_status": "APPROVED", "balance": "0.00",
                                     "limits": {"balance_cap": "2000.00",
                                                "daily_outflow_remaining": "2000.00"}}
    bank.accounts[SUPERVISION] = {"status": "ACTIVE", "frozen": False, "balance": "100000.00"}
    return ctx, sftp, bank, clock


def fail(ctx: Context, serial: str, code: str, state: str = "FAILED") -> None:
    with ctx.store.transaction():
        ctx.store.execute("UPDATE batch_records SET state = ?, code = ? WHERE serial = ?",
                          (state, code, serial))


Setup = tuple[Context, FakeSftp, FakeBank, FixedClock]


def test_disbursement_needs_an_approved_reconciliation(setup: Setup) -> None:
    ctx, *_ = setup
    with pytest.raises(StepRefused, match="reconcile first"):
        disburse(ctx, DAY)


def test_sftp_down_leaves_the_batch_unsent_until_a_later_upload(
        setup: tuple[Context, FakeSftp, FakeBank, FixedClock]) -> None:
    ctx, sftp, _, _ = setup
    paid_and_reconciled(ctx, DAY, [("a", "T-A", 1000)])
    sftp.down = True
    with pytest.raises(SftpUnavailable):
        disburse(ctx, DAY)
    batch = ctx.store.one("SELECT state, upload_error FROM batches")
    assert batch is not None and batch["state"] == "BUILT" and "refused" in batch["upload_error"]
    assert sftp.files == {}
    sftp.down = False
    assert upload_pending(ctx) == [1]
    assert list(sftp.files) == ["/upload/batches/DF_DEMO01_20260105_1.txt"]
    assert upload_pending(ctx) == []  # nothing sent twice


def test_only_fixed_failures_go_again_and_an_original_succeeds_once(
        setup: tuple[Context, FakeSftp, FakeBank, FixedClock]) -> None:
    ctx, sftp, bank, _ = setup
    paid_and_reconciled(ctx, DAY, [("a", "T-A", 1000), ("b", "T-B", 2000), ("c", "T-C", 3000)])
    assert disburse(ctx, DAY) == 1
    a, b, c = records(ctx, 1)
    fail(ctx, a["serial"], "0000", "SUCCESS")
    fail(ctx, b["serial"], "3017")  # frozen
    fail(ctx, c["serial"], "3028")  # busy: always worth another try
    bank.accounts[b["account_no"]]["frozen"] = True

    out = resubmit(ctx)
    assert out.batches == [2] and list(out.held) == [b["serial"]] and "frozen" in out.held[b["serial"]]
    [again_c] = records(ctx, 2)
    assert (again_c["original_id"], again_c["amount"]) == (c["record_id"], 3000)
    assert resubmit(ctx).batches == []  # c's failure was already re-sent; b still frozen

    bank.accounts[b["account_no"]]["frozen"] = False
    assert resubmit(ctx).batches == [3]
    [again_b] = records(ctx, 3)
    fail(ctx, again_b["serial"], "0000", "SUCCESS")
    fail(ctx, again_c["serial"], "0000", "SUCCESS")
    assert original_progress(ctx, 1) == {"records": 3, "succeeded": 3, "outstanding": 0}
    with pytest.raises(sqlite3.IntegrityError):
        fail(ctx, c["serial"], "0000", "SUCCESS")  # the original cannot succeed a second time
    assert sorted(sftp.files) == [f"/upload/batches/DF_DEMO01_20260105_{n}.txt" for n in (1, 2, 3)]


def test_a_batch_without_a_return_after_the_deadline_raises_one_alert(
        setup: tuple[Context, FakeSftp, FakeBank, FixedClock]) -> None:
    ctx, _, _, clock = setup
    paid_and_reconciled(ctx, DAY, [("a", "T-A", 1000)])
    disburse(ctx, DAY)
    clock.advance(3600)
    assert check_deadlines(ctx) == []
    clock.advance(3600)
    assert check_deadlines(ctx) == [1]
    assert check_deadlines(ctx) == [1]
    assert ctx.store.scalar("SELECT count(*) FROM alerts WHERE kind = 'return_overdue'") == 1


def _return_for(batch: list[dict[str, Any]]) -> bytes:
    details = [{"seq": r["seq"], "serial": r["serial"], "account_no": r["account_no"],
                "account_name": r["account_name"], "amount": r["amount"], "bank_serial": f"B{r['seq']}",
                "result": "S", "code": "0000", "reason": "成功",
                "finished_at": datetime(2026, 1, 5, 9, 30)} for r in batch]
    total = sum(d["amount"] for d in details)
    header = {"batch_no": "1", "business_date": datetime(2026, 1, 5).date(), "merchant": "DEMO01",
              "kind": "DF", "record_count": len(details), "total_amount": total,
              "success_count": len(details), "success_amount": total, "fail_count": 0, "fail_amount": 0,
              "processed_at": datetime(2026, 1, 5, 9, 35)}
    return encode_file(load_layout("return"), header, details)


def test_sftp_down_during_polling_changes_nothing_and_the_next_poll_applies_the_return(
        setup: tuple[Context, FakeSftp, FakeBank, FixedClock]) -> None:
    ctx, sftp, _, _ = setup
    paid_and_reconciled(ctx, DAY, [("a", "T-A", 1000), ("b", "T-B", 2000)])
    assert disburse(ctx, DAY) == 1
    sent = records(ctx, 1)
    sftp.files["/download/returns/DF_DEMO01_20260105_1_RET.txt"] = _return_for(sent)
    sftp.down = True
    with pytest.raises(SftpUnavailable):
        poll_returns(ctx)
    assert [r["state"] for r in records(ctx, 1)] == ["WAITING", "WAITING"]
    assert ctx.store.scalar("SELECT state FROM batches WHERE batch_no = 1") == "SENT"
    assert ctx.store.scalar("SELECT value FROM meta WHERE key = 'last_poll_at'") is None
    sftp.down = False
    assert poll_returns(ctx).files_applied == ["DF_DEMO01_20260105_1_RET.txt"]
    assert [r["state"] for r in records(ctx, 1)] == ["SUCCESS", "SUCCESS"]
    assert poll_returns(ctx).files_applied == []  # applied once


def test_a_3008_disbursement_goes_again_only_as_far_as_the_98_account_covers_it(setup: Setup) -> None:
    ctx, _, bank, _ = setup
    paid_and_reconciled(ctx, DAY, [("a", "T-A", 1000), ("b", "T-B", 2000), ("c", "T-C", 3000)])
    assert disburse(ctx, DAY) == 1
    a, b, c = records(ctx, 1)
    for record in (a, b, c):
        fail(ctx, record["serial"], "3008")
    bank.accounts[SUPERVISION]["balance"] = "35.00"  # a and b, not c as well

    out = resubmit(ctx)
    assert out.batches == [2] and [r["amount"] for r in records(ctx, 2)] == [1000, 2000]
    assert list(out.held) == [c["serial"]] and "fund it first" in out.held[c["serial"]]
    # a and b are at the bank, unanswered: they are paid from the 35.00 before c could be.
    bank.accounts[SUPERVISION]["balance"] = "55.00"
    assert resubmit(ctx).batches == []
    bank.accounts[SUPERVISION]["balance"] = "60.00"
    assert resubmit(ctx).batches == [3]


def test_a_3008_disbursement_is_held_while_the_98_account_cannot_be_read(setup: Setup) -> None:
    ctx, _, bank, _ = setup
    paid_and_reconciled(ctx, DAY, [("a", "T-A", 1000)])
    assert disburse(ctx, DAY) == 1
    [a] = records(ctx, 1)
    fail(ctx, a["serial"], "3008")

    def unreadable(account_no: str) -> dict[str, Any]:
        raise BankApiError("3009", f"no account {account_no}", 404)

    bank.query_account = unreadable  # type: ignore[method-assign]
    out = resubmit(ctx)
    assert out.batches == [] and "could not be checked" in out.held[a["serial"]]
