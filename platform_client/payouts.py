"""Batch files at the bank: disbursement (DF) and withholding (DK), upload, returns, re-submission.

Batch states: ``BUILT`` (file and records stored, not yet at the bank) -> ``SENT`` (uploaded
by temporary name + rename) -> ``RETURNED`` (every record has a result), ``INCOMPLETE`` (the
return lacked some records: they stay WAITING, flagged) or ``REJECTED`` (a rejection file:
no record was processed; all may be re-sent). Record states: WAITING, SUCCESS, FAILED,
REJECTED. Each step is one transaction per batch or file, so a crash leaves every batch
in one of these states and the step can be run again: an upload interrupted before the
rename leaves the batch BUILT (the bank ignores temporary names); a return applied twice
changes nothing.

Re-submission sends the failed (or rejected) attempts of original records again, in a new
batch with new serials and a memo naming the original serial, once the cause is fixed
(checked against the bank's account view where the code says what to check). The store's
unique index guarantees an original record succeeds at most once.

Example::

    disburse(ctx, "2026-01-05")      # after reconcile + approve: DF batch built and uploaded
    poll_returns(ctx)                # apply return / rejection files, alert on overdue batches
    resubmit(ctx)                    # failed records whose cause is fixed go out again
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from contracts.codes import CODES
from contracts.money import format_fen, parse_yuan
from platform_client import wallet
from platform_client.batches import OutRecord, build_request, record_serial, resend_memo
from platform_client.context import Context
from platform_client.errors import BankApiError, BankUnavailable, SftpUnavailable, StepRefused
from platform_client.returns import (
    ReplyUnreadable,
    SentRecord,
    decide_return,
    parse_reply_name,
    read_rejection,
    read_return,
)
from platform_client.sftp import BATCHES_DIR, RETURNS_DIR

WAITING_STATES = ("SENT", "INCOMPLETE")


@dataclass(frozen=True)
class Candidate:
    """A record to put in a new batch."""

    kind: str
    source_ref: str
    user_id: str
    account_no: str
    account_name: str
    amount: int
    memo: str
    original_id: int | None = None


@dataclass
class PollResult:
    files_applied: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    overdue: list[int] = field(default_factory=list)


def _create_batch(ctx: Context, kind: str, for_date: str, candidates: list[Candidate]) -> int:
    """Store a new batch and its records (call inside a transaction); the batch number."""
    batch_no = ctx.store.next_value("batch_no", ctx.config.batch_no_start)
    account = ctx.config.supervision_account if kind == "DF" else ctx.config.settlement_account
    records = [OutRecord(c.account_no, c.account_name, c.amount, c.memo,
                         serial=record_serial(kind, batch_no, seq))
               for seq, c in enumerate(candidates, start=1)]
    name, content = build_request(kind, batch_no, ctx.clock.business_date(), ctx.config.merchant,
                                  account, records)
    ctx.store.execute(
        "INSERT INTO batches(batch_no, kind, for_date, business_date, file_name, content, record_count, "
        "total, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'BUILT', ?)",
        (batch_no, kind, for_date, ctx.clock.business_date().isoformat(), name, content, len(records),
         sum(r.amount for r in records), ctx.now_iso()))
    for seq, (c, r) in enumerate(zip(candidates, records, strict=True), start=1):
        ctx.store.execute(
            "INSERT INTO batch_records(batch_no, seq, serial, original_id, kind, source_ref, user_id, "
            "account_no, account_name, amount, memo) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (batch_no, seq, r.serial, c.original_id, kind, c.source_ref, c.user_id, c.account_no,
             c.account_name, c.amount, c.memo))
    return batch_no


def upload_pending(ctx: Context) -> list[int]:
    """Upload every BUILT batch in number order; the batches sent.

    On an SFTP failure the batch stays BUILT with the error recorded and
    :class:`SftpUnavailable` is raised: run the step again later.
    """
    sent: list[int] = []
    pending = ctx.store.all("SELECT batch_no, file_name, content FROM batches WHERE state = 'BUILT' "
                            "ORDER BY batch_no")
    if not pending:
        return sent
    try:
        with ctx.sftp() as sftp:
            for row in pending:
                sftp.upload(BATCHES_DIR, row["file_name"], bytes(row["content"]))
                with ctx.store.transaction():
                    ctx.store.execute("UPDATE batches SET state = 'SENT', uploaded_at = ?, "
                                      "upload_error = NULL WHERE batch_no = ?",
                                      (ctx.now_iso(), row["batch_no"]))
                sent.append(int(row["batch_no"]))
    except SftpUnavailable as exc:
        with ctx.store.transaction():
            ctx.store.execute("UPDATE batches SET upload_error = ? WHERE state = 'BUILT'", (str(exc),))
        raise
    return sent


def _user_account(ctx: Context, user_id: str) -> Any:
    return ctx.store.one("SELECT account_no, name FROM users WHERE user_id = ?", (user_id,))


def disburse(ctx: Context, bill_date: str) -> int | None:
    """Build the DF batch of a reconciled, approved date and upload it; its number (None: nothing new).

    Top-ups of users without an account yet are left for a later run.
    """
    run = ctx.store.one("SELECT state, approved_by FROM recon_runs WHERE bill_date = ?", (bill_date,))
    if run is None or run["state"] != "DONE":
        raise StepRefused(f"reconciliation for {bill_date} has not completed: run reconcile first")
    if run["approved_by"] is None:
        raise StepRefused(f"reconciliation for {bill_date} is not approved: run approve first")
    batch_no: int | None = None
    with ctx.store.transaction():
        rows = ctx.store.all(
            "SELECT o.out_trade_no, o.user_id, o.amount, o.transaction_id, u.account_no, u.name "
            "FROM recon_items i JOIN orders o ON o.out_trade_no = i.out_trade_no "
            "JOIN users u ON u.user_id = o.user_id "
            "WHERE i.bill_date = ? AND i.status IN ('OK', 'RESOLVED') AND o.credited_via IS NOT NULL "
            "AND u.account_no IS NOT NULL AND NOT EXISTS (SELECT 1 FROM batch_records r WHERE "
            "r.kind = 'DF' AND r.source_ref = o.out_trade_no AND r.original_id IS NULL) "
            "ORDER BY o.out_trade_no", (bill_date,))
        if rows:
            candidates = [Candidate("DF", r["out_trade_no"], r["user_id"], r["account_no"], r["name"],
                                    r["amount"], f"充值到账 {r['out_trade_no']}") for r in rows]
            batch_no = _create_batch(ctx, "DF", bill_date, candidates)
    upload_pending(ctx)
    return batch_no


def df_done(ctx: Context, day: str) -> tuple[bool, str]:
    """Whether the top-ups of ``day`` have been disbursed and their batches answered.

    Until ``day`` is reconciled its top-ups are not known (the bill, not the notifications,
    says which orders were paid), so an unreconciled or failed day is never done, even one
    without a single notification: a dropped order of that day may still be in transit.
    """
    run = ctx.store.one("SELECT state, approved_by FROM recon_runs WHERE bill_date = ?", (day,))
    if run is None:
        return False, f"{day} has not been reconciled: run reconcile, approve and disburse first"
    if run["state"] != "DONE":
        return False, f"reconciliation of {day} is {run['state']}: run reconcile again"
    if run["approved_by"] is None:
        return False, f"reconciliation of {day} awaits approval"
    undisbursed = ctx.store.scalar(
        "SELECT count(*) FROM recon_items i JOIN orders o ON o.out_trade_no = i.out_trade_no "
        "JOIN users u ON u.user_id = o.user_id WHERE i.bill_date = ? AND i.status IN ('OK', 'RESOLVED') "
        "AND u.account_no IS NOT NULL AND NOT EXISTS (SELECT 1 FROM batch_records r WHERE "
        "r.kind = 'DF' AND r.source_ref = o.out_trade_no)", (day,))
    if undisbursed:
        return False, f"{undisbursed} top-up(s) of {day} not yet disbursed"
    open_batches = ctx.store.all("SELECT batch_no, state FROM batches WHERE kind = 'DF' AND for_date = ? "
                                 "AND state IN ('BUILT', 'SENT')", (day,))
    if open_batches:
        return False, "DF batch(es) " + ", ".join(f"{b['batch_no']} {b['state']}" for b in open_batches) + \
            " not yet answered"
    return True, ""


def withhold(ctx: Context, day: str) -> int | None:
    """Build the DK batch of ``day``'s consumption (after its DF is done) and upload it."""
    done, why = df_done(ctx, day)
    if not done:
        raise StepRefused(f"top-ups first: {why}")
    batch_no: int | None = None
    with ctx.store.transaction():
        rows = ctx.store.all(
            "SELECT c.consumption_id, c.user_id, c.amount, c.memo, u.account_no, u.name FROM consumptions c "
            "JOIN users u ON u.user_id = c.user_id WHERE c.day = ? AND u.account_no IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM batch_records r WHERE r.kind = 'DK' AND "
            "r.source_ref = c.consumption_id AND r.original_id IS NULL) ORDER BY c.consumption_id", (day,))
        if rows:
            candidates = [Candidate("DK", r["consumption_id"], r["user_id"], r["account_no"], r["name"],
                                    r["amount"], r["memo"] or f"消费 {r['consumption_id']}") for r in rows]
            batch_no = _create_batch(ctx, "DK", day, candidates)
    upload_pending(ctx)
    return batch_no


# -- returns ------------------------------------------------------------------------------------


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _apply_rejection(ctx: Context, batch: Any, name: str, data: bytes) -> list[str]:
    rej = read_rejection(data)
    code, reason = rej.header["code"], rej.header["reason"]
    lines = "; ".join(f"line {d['line_no']} {d['code']} {d['reason']}" for d in rej.details)
    full = reason + (f" ({lines})" if lines else "")
    ctx.store.execute("UPDATE batches SET state = 'REJECTED', returned_at = ?, reply_file = ?, "
                      "reject_code = ?, reject_reason = ? WHERE batch_no = ?",
                      (ctx.now_iso(), name, code, full, batch["batch_no"]))
    ctx.store.execute("UPDATE batch_records SET state = 'REJECTED', code = ?, reason = ? "
                      "WHERE batch_no = ? AND state = 'WAITING'", (code, full, batch["batch_no"]))
    return [f"batch {batch['batch_no']} rejected as a whole: {code} {full}"]


def _apply_return(ctx: Context, batch: Any, name: str, data: bytes) -> list[str]:
    ret = read_return(data)
    rows = ctx.store.all("SELECT * FROM batch_records WHERE batch_no = ?", (batch["batch_no"],))
    sent = {r["serial"]: SentRecord(r["serial"], r["account_no"], r["amount"], r["state"], r["code"])
            for r in rows}
    by_serial = {r["serial"]: r for r in rows}
    decision = decide_return(ret, sent, expected_count=batch["record_count"], expected_total=batch["total"])
    findings = list(decision.findings)
    for outcome in decision.outcomes:
        record = by_serial[outcome.serial]
        try:
            ctx.store.execute(
                "UPDATE batch_records SET state = ?, code = ?, reason = ?, bank_serial = ?, finished_at = ?, "
                "flag = NULL WHERE record_id = ?",
                (outcome.state, outcome.code, outcome.reason, outcome.bank_serial,
                 outcome.finished_at.isoformat(), record["record_id"]))
        except sqlite3.IntegrityError:
            # The bank moved money for a record that had already succeeded: never hide it.
            ctx.store.execute("UPDATE batch_records SET state = 'DOUBLE_SUCCESS', code = ?, reason = ?, "
                              "bank_serial = ? WHERE record_id = ?",
                              (outcome.code, "second success of an original record", outcome.bank_serial,
                               record["record_id"]))
            ctx.alert("double_success", record["serial"],
                      f"record {record['serial']} succeeded although its original already had")
            continue
        if outcome.state == "SUCCESS" and record["kind"] == "DF":
            wallet.post(ctx.store, user_id=record["user_id"], kind="disbursed", ref=record["source_ref"],
                        amount=record["amount"], at=ctx.now_iso(),
                        memo=f"DF batch {batch['batch_no']} serial {record['serial']}")
    for serial in decision.missing:
        ctx.store.execute("UPDATE batch_records SET flag = 'MISSING_IN_RETURN' WHERE serial = ?", (serial,))
    waiting = ctx.store.scalar("SELECT count(*) FROM batch_records WHERE batch_no = ? AND state = 'WAITING'",
                               (batch["batch_no"],))
    ctx.store.execute("UPDATE batches SET state = ?, returned_at = coalesce(returned_at, ?), reply_file = ? "
                      "WHERE batch_no = ?", ("INCOMPLETE" if waiting else "RETURNED", ctx.now_iso(), name,
                                             batch["batch_no"]))
    return findings


def poll_returns(ctx: Context) -> PollResult:
    """One poll of ``/download/returns/``: apply every new reply, then alert on overdue batches.

    An SFTP failure raises :class:`SftpUnavailable` before anything changes: poll again later.
    """
    result = PollResult()
    batches = {row["file_name"][:-4]: row for row in ctx.store.all("SELECT * FROM batches")}
    with ctx.sftp() as sftp:
        names = sftp.listdir(RETURNS_DIR)
        for name in names:
            parsed = parse_reply_name(name)
            batch = batches.get(parsed.stem) if parsed else None
            if parsed is None or batch is None:
                if ctx.store.one("SELECT 1 FROM seen_files WHERE name = ?", (name,)) is None:
                    with ctx.store.transaction():
                        ctx.store.execute("INSERT INTO seen_files(name, sha1, seen_at, outcome) VALUES "
                                          "(?, '', ?, 'ignored')", (name, ctx.now_iso()))
                        ctx.alert("unexpected_file", name, f"{name} in {RETURNS_DIR} is no reply to a "
                                                           "batch of this platform: not acted on")
                    result.findings.append(f"{name}: not a reply to one of our batches")
                continue
            if parsed.kind == "RET" and batch["state"] not in WAITING_STATES:
                continue  # nothing left to learn from another copy
            if parsed.kind == "REJ" and batch["state"] != "SENT":
                continue
            data = sftp.read(f"{RETURNS_DIR}/{name}")
            digest = _sha1(data)
            if ctx.store.one("SELECT 1 FROM seen_files WHERE name = ? AND sha1 = ?", (name, digest)):
                continue
            with ctx.store.transaction():
                try:
                    findings = (_apply_rejection if parsed.kind == "REJ" else _apply_return)(
                        ctx, batch, name, data)
                    outcome = "applied"
                except ReplyUnreadable as exc:
                    findings = [str(exc) + ": not acted on, records stay waiting"]
                    outcome = "unreadable"
                if not parsed.canonical:
                    findings.append(f"unexpected reply name {name} "
                                    f"(expected {parsed.stem}_{parsed.kind}.txt)")
                ctx.store.execute("INSERT INTO seen_files(name, sha1, seen_at, outcome) VALUES (?, ?, ?, ?)",
                                  (name, digest, ctx.now_iso(), outcome))
                for i, finding in enumerate(findings):
                    ctx.alert("reply_finding", f"{name}:{digest[:12]}:{i}", f"{name}: {finding}")
            if outcome == "applied":
                result.files_applied.append(name)
            result.findings += [f"{name}: {f}" for f in findings]
            batches = {row["file_name"][:-4]: row for row in ctx.store.all("SELECT * FROM batches")}
    result.overdue = check_deadlines(ctx)
    with ctx.store.transaction():
        ctx.store.execute("INSERT INTO meta(key, value) VALUES ('last_poll_at', ?) ON CONFLICT(key) "
                          "DO UPDATE SET value = excluded.value", (ctx.now_iso(),))
    return result


def poll_due(ctx: Context) -> bool:
    """Whether the return-poll interval has passed since the last poll."""
    last = ctx.store.scalar("SELECT value FROM meta WHERE key = 'last_poll_at'")
    if last is None:
        return True
    interval = timedelta(seconds=ctx.config.return_poll_interval_seconds)
    return ctx.now() >= datetime.fromisoformat(last) + interval


def check_deadlines(ctx: Context) -> list[int]:
    """Alert (once each) on SENT batches with no reply after the return deadline."""
    overdue = []
    now = ctx.now()
    deadline = timedelta(seconds=ctx.config.return_deadline_seconds)
    with ctx.store.transaction():
        for row in ctx.store.all("SELECT batch_no, file_name, uploaded_at FROM batches WHERE state = 'SENT'"):
            due = datetime.fromisoformat(row["uploaded_at"]) + deadline
            if now >= due:
                overdue.append(int(row["batch_no"]))
                ctx.alert("return_overdue", str(row["batch_no"]),
                          f"batch {row['batch_no']} ({row['file_name']}) has no return file "
                          f"{ctx.config.return_deadline} after upload (sent {row['uploaded_at']})")
    return overdue


# -- re-submission ------------------------------------------------------------------------------

ACCOUNT_CODES = frozenset({"3009", "3014", "3017", "3018", "3031", "3057", "3061", "3013", "3008"})


def _cause_fixed(ctx: Context, record: Any, account_no: str, name: str) -> str | None:
    """None when the record may go again; otherwise why it is held."""
    code = record["code"] or ""
    if record["state"] == "REJECTED" or code == "3028" or code not in ACCOUNT_CODES:
        return None  # file-level problems, busy, or nothing the account view can tell
    if code == "3008" and record["kind"] == "DF":
        return None  # the 98 account's funding: checked for the whole re-submission (_DfFunding)
    try:
        acc = ctx.bank.query_account(account_no)
    except BankApiError as exc:
        return f"account {account_no}: {exc.bank_code} {exc}"
    except BankUnavailable as exc:
        return f"account {account_no} could not be checked: {exc}"
    if acc["status"] == "CLOSED":
        return "account closed"
    if acc["frozen"]:
        return "account still frozen"
    if acc["status"] != "ACTIVE":
        return f"account {acc['status']} (images {acc['image_status']}: {acc.get('image_reason') or ''})"
    if acc["name"] != name:
        return "account name still differs"
    if record["kind"] == "DK" and code in ("3008", "3013"):
        balance = int(acc["balance"].replace(".", ""))
        remaining = int(acc["limits"]["daily_outflow_remaining"].replace(".", ""))
        if balance < record["amount"] or remaining < record["amount"]:
            return f"balance {acc['balance']}, daily outflow left {acc['limits']['daily_outflow_remaining']}"
    if record["kind"] == "DF" and code == "3014":
        cap = int(acc["limits"]["balance_cap"].replace(".", ""))
        if int(acc["balance"].replace(".", "")) + record["amount"] > cap:
            return f"balance {acc['balance']} + amount would exceed the cap"
    return None


class _DfFunding:
    """What the 98 account can still pay for re-sent DF records, asked once per re-submission.

    The bank's balance of the 98 account less the DF records already at the bank and not yet
    answered (they will be paid from it first). A record is re-sent only while this covers it,
    so a 3008 failure is not re-sent until the 98 account has been funded; when the balance
    cannot be read, 3008 failures are held (other DF causes go: the 98 account was enough).
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.left: int | None = None
        self.error: str | None = None
        self._asked = False

    def _ask(self) -> None:
        self._asked = True
        account = self.ctx.config.supervision_account
        try:
            balance = parse_yuan(self.ctx.bank.query_account(account)["balance"])
        except (BankApiError, BankUnavailable) as exc:
            self.error = f"the 98 account {account} could not be checked: {exc}"
            return
        in_flight = int(self.ctx.store.scalar(
            "SELECT coalesce(sum(r.amount), 0) FROM batch_records r "
            "JOIN batches b ON b.batch_no = r.batch_no "
            "WHERE r.kind = 'DF' AND r.state = 'WAITING' AND b.state IN ('BUILT', 'SENT')") or 0)
        self.left = balance - in_flight

    def take(self, record: Any) -> str | None:
        """None when the 98 account covers ``record`` (and reserve it); otherwise why not."""
        if not self._asked:
            self._ask()
        if self.left is None:
            return self.error if record["code"] == "3008" else None
        if record["amount"] > self.left:
            return (f"the 98 account covers {format_fen(max(self.left, 0))} of what is due, "
                    f"this record needs {format_fen(record['amount'])}: fund it first")
        self.left -= record["amount"]
        return None


@dataclass
class ResubmitResult:
    batches: list[int] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)


def resubmit(ctx: Context, kind: str | None = None, serials: list[str] | None = None) -> ResubmitResult:
    """Send failed or rejected attempts again in new batches (one per kind) once fixed."""
    result = ResubmitResult()
    failed = ctx.store.all(
        "SELECT r.* FROM batch_records r WHERE r.state IN ('FAILED', 'REJECTED') AND r.resent = 0 "
        "AND NOT EXISTS (SELECT 1 FROM batch_records s WHERE s.state = 'SUCCESS' AND "
        "coalesce(s.original_id, s.record_id) = coalesce(r.original_id, r.record_id)) "
        "ORDER BY r.kind, r.record_id")
    ready: dict[str, list[tuple[Any, Candidate, str]]] = {}
    funding = _DfFunding(ctx)
    for record in failed:
        if (kind and record["kind"] != kind) or (serials and record["serial"] not in serials):
            continue
        user = _user_account(ctx, record["user_id"])
        why = _cause_fixed(ctx, record, user["account_no"], user["name"])
        if why is None and record["kind"] == "DF":
            why = funding.take(record)
        if why is not None:
            result.held[record["serial"]] = f"{record['code']} {why}"
            continue
        original = record["original_id"] or record["record_id"]
        first = ctx.store.one("SELECT serial, batch_no FROM batch_records WHERE record_id = ?", (original,))
        assert first is not None
        for_date = ctx.store.scalar("SELECT for_date FROM batches WHERE batch_no = ?", (first["batch_no"],))
        ready.setdefault(record["kind"], []).append((record, Candidate(
            record["kind"], record["source_ref"], record["user_id"], user["account_no"], user["name"],
            record["amount"], resend_memo(first["serial"]), original_id=original), str(for_date)))
    for batch_kind, entries in sorted(ready.items()):
        with ctx.store.transaction():
            for_date = min(d for _, _, d in entries)
            batch_no = _create_batch(ctx, batch_kind, for_date, [c for _, c, _ in entries])
            for record, _, _ in entries:
                ctx.store.execute("UPDATE batch_records SET resent = 1 WHERE record_id = ?",
                                  (record["record_id"],))
        result.batches.append(batch_no)
    upload_pending(ctx)
    return result


def original_progress(ctx: Context, batch_no: int) -> dict[str, int]:
    """How the original records of a batch stand across all their attempts."""
    rows = ctx.store.all(
        # coalesce(...) on both sides: the lookup uses the one_success_per_original index.
        "SELECT o.record_id, EXISTS (SELECT 1 FROM batch_records s WHERE s.state = 'SUCCESS' AND "
        "coalesce(s.original_id, s.record_id) = coalesce(o.original_id, o.record_id)) AS ok "
        "FROM batch_records o "
        "WHERE o.batch_no = ? AND o.original_id IS NULL", (batch_no,))
    done = sum(1 for r in rows if r["ok"])
    return {"records": len(rows), "succeeded": done, "outstanding": len(rows) - done}


def code_text(code: str | None) -> str:
    """'3017 账户已冻结 (account is frozen)' from the bank's code table."""
    if not code:
        return ""
    entry = CODES.get(code)
    return f"{code} {entry.message_zh} ({entry.message})" if entry else f"{code} (not in the code table)"


def as_date(text: str) -> date:
    return date.fromisoformat(text)
