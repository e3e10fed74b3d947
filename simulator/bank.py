"""The one Bank object: all state and every operation, shared by HTTP, SFTP and the clock.

Adapters call these methods and nothing below them, and never keep references to the
store, clock or services: :meth:`Bank.reset` replaces them all.

Example::

    bank = Bank(load_profile(None), state_dir=None)      # in-memory, for unit tests
    answer = bank.open_account("demo-platform", {"request_serial": "S1", ...})
    bank.scheduler.advance(timedelta(days=1))
    assert not bank.invariants()
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time as _time
import weakref
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from contracts.money import AmountFormatError, parse_yuan
from simulator.clock import ClockMode, VirtualClock
from simulator.config import Profile, merge_patch, profile_from_dict
from simulator.domain.accounts import Accounts, OpeningRequest
from simulator.domain.idempotency import Answer, Idempotency, error_answer
from simulator.domain.invariants import Violation, check, take_snapshot
from simulator.domain.ledger import CLEARING_ACCOUNT, Ledger, Leg
from simulator.domain.refunds import Refunds
from simulator.errors import AccountClosed, AmountInvalid, BankError
from simulator.events import EventFilter, list_events, record_event, record_events
from simulator.filedesk import FileDesk
from simulator.outbox import Outbox
from simulator.scheduler import Scheduler
from simulator.store import DB_FILENAME, Store
from simulator.wechat.channel import WechatChannel

_PROFILE_KEY = "profile"
_ATTEMPTS_KEPT = 200_000


def _ok(serial: str | None, data: dict[str, Any]) -> Answer:
    body: dict[str, Any] = {"code": "0000", "message": "success"}
    if serial is not None:
        body["request_serial"] = serial
    body["data"] = data
    return Answer(200, body)


def _fen(text: str) -> int:
    try:
        return parse_yuan(text)
    except AmountFormatError as exc:
        raise AmountInvalid(str(exc)) from None


class Bank:
    def __init__(self, profile: Profile, state_dir: Path | None, *,
                 prefer_stored_profile: bool = False, group_commit: bool = False,
                 wall: Callable[[], float] = _time.time) -> None:
        """Open the bank's state in ``state_dir`` (None: in memory).

        With ``prefer_stored_profile`` a restart keeps the profile the state was last
        running with (changed at runtime through the control API); otherwise ``profile``
        replaces it. With ``group_commit`` changes are committed by :meth:`flush` (the
        server calls it before every response); see :mod:`simulator.store`.
        """
        self.state_dir = state_dir
        self._wall = wall
        self._group_commit = group_commit
        # Attempt numbers per (platform, operation, serial) for fault rules such as "fail
        # the first attempt"; kept in memory, forgotten by reset, bounded.
        self._attempts: dict[int, int] = {}
        # Request events wait here for the next flush, which writes them in one statement;
        # the server flushes before it answers, so none is lost for an answered request.
        self._request_log: list[tuple[int, str, str | None, str | None, dict[str, Any]]] = []
        # A bank whose state is in memory keeps its platforms' SFTP trees in one temp dir,
        # removed by close()/destroy(), or when the bank is collected or the process exits:
        # unit tests that never close a bank must not leave directories behind.
        self._memory_files: Path | None = None
        if state_dir is None:
            self._memory_files = Path(tempfile.mkdtemp(prefix="banksim-files-"))
            self._remove_memory_files = weakref.finalize(self, shutil.rmtree, self._memory_files, True)
        self._open(profile, prefer_stored_profile)

    # -- lifecycle ------------------------------------------------------------------

    def _open(self, profile: Profile, prefer_stored: bool) -> None:
        self.store = Store.open(self.state_dir / DB_FILENAME if self.state_dir else None)
        self.store.group_commit = self._group_commit
        if self._group_commit:
            self.store.start_checkpointer()
        stored = self.store.get_kv(_PROFILE_KEY)
        if stored is not None and prefer_stored:
            profile = profile_from_dict(json.loads(stored))
        self.profile = profile
        self.clock = VirtualClock(self.store, start=profile.clock.start,
                                  mode=ClockMode.parse(profile.clock.mode),
                                  cutover=profile.clock.cutover, wall=self._wall)
        self.scheduler = Scheduler(self.store, self.clock)
        self.ledger = Ledger(self.store)
        self.accounts = Accounts(self.store, self.ledger)
        self.refunds = Refunds(self.store, self.ledger, self.accounts)
        self.idempotency = Idempotency(self.store)
        # Platforms' SFTP trees: under the state directory, or the temp dir of a bank whose
        # state is in memory (see __init__).
        if self.state_dir is not None:
            self.files_root = self.state_dir / "sftp"
        else:
            assert self._memory_files is not None
            self.files_root = self._memory_files
            self.files_root.mkdir(exist_ok=True)  # reset() emptied it
        self.outbox = Outbox(self.files_root)
        self.files = FileDesk(self)
        # The fake WeChat Pay channel: its tables, jobs (notifications, T+1 settlement).
        self.wechat = WechatChannel(self)
        self._apply_profile(profile)
        self._recover()

    def _apply_profile(self, profile: Profile) -> None:
        """Make the state agree with ``profile``: accounts, clock settings, stored copy."""
        self.profile = profile
        if str(self.clock.mode) != profile.clock.mode:
            self.clock.set_mode(ClockMode.parse(profile.clock.mode))
        if self.clock.cutover != profile.clock.cutover:
            self.clock.set_cutover(profile.clock.cutover)
        now = self.clock.now_us()
        with self.store.transaction():
            if self.store.one("SELECT 1 FROM accounts WHERE account_no = ?", (CLEARING_ACCOUNT,)) is None:
                self.ledger.create_account(account_no=CLEARING_ACCOUNT, kind="INTERNAL",
                                           name="银行清算往来", opened_us=now, allow_negative=True)
            for p in profile.platforms:
                for number, kind, label in ((p.supervision_account, "SUPERVISION", "监管账户"),
                                            (p.settlement_account, "SETTLEMENT", "结算账户")):
                    if self.store.one("SELECT 1 FROM accounts WHERE account_no = ?", (number,)):
                        continue
                    self.ledger.create_account(account_no=number, kind=kind, app_id=p.app_id,
                                               name=f"{p.name}{label}", opened_us=now)
                    if kind == "SUPERVISION" and p.supervision_opening_balance:
                        self.ledger.post(
                            kind="opening_balance", at_us=now,
                            business_date=self.clock.business_date(), app_id=p.app_id,
                            legs=[Leg(CLEARING_ACCOUNT, -p.supervision_opening_balance),
                                  Leg(number, p.supervision_opening_balance)])
            self.store.set_kv(_PROFILE_KEY, json.dumps(profile.as_dict(), ensure_ascii=False))
            for p in profile.platforms:
                self.outbox.jail(p.app_id)
            self.files.schedule_statements()
        self.flush()

    def _recover(self) -> None:
        self.files.recover()
        self.flush()

    def flush(self) -> None:
        """Make everything done so far durable, then publish the files it owes."""
        self._write_request_log()
        self.store.flush()
        if not self.store.in_transaction:
            self.files.publish()

    @property
    def has_unflushed(self) -> bool:
        return bool(self._request_log) or self.store.has_unflushed

    def _write_request_log(self) -> None:
        if self._request_log:
            rows, self._request_log = self._request_log, []
            with self.store.transaction():
                record_events(self.store, rows)

    def reset(self) -> None:
        """Forget everything: a fresh state with the current profile, clock at its start."""
        profile = self.profile
        self._attempts.clear()
        self._request_log.clear()
        self.store.close()
        shutil.rmtree(self.files_root, ignore_errors=True)
        if self.state_dir is not None:
            for suffix in ("", "-wal", "-shm"):
                (self.state_dir / (DB_FILENAME + suffix)).unlink(missing_ok=True)
        self._open(profile, prefer_stored=False)

    def close(self) -> None:
        self._write_request_log()
        self.store.close()
        if self._memory_files is not None:
            self._remove_memory_files()  # the state went with the in-memory store

    def destroy(self) -> None:
        """Close and delete the state directory (ephemeral servers)."""
        self.close()
        shutil.rmtree(self.files_root, ignore_errors=True)
        if self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def file_complete(self, app_id: str, area: str, name: str, path: Path) -> dict[str, Any]:
        """A completed upload (``area`` images or batches); see :mod:`simulator.filedesk`."""
        return self.files.file_complete(app_id, area, name, path)

    def next_attempt(self, app_id: str, operation: str, serial: str) -> int:
        # A hash for a key: the table holds the last 200,000 serials, and two ints an entry
        # keep it a fraction of the size of string tuples (a collision, odds ~1e-9, would
        # only give one serial another's attempt number).
        key = hash((app_id, operation, serial))
        attempt = self._attempts.pop(key, 0) + 1
        self._attempts[key] = attempt
        if len(self._attempts) > _ATTEMPTS_KEPT:
            del self._attempts[next(iter(self._attempts))]
        return attempt

    # -- profile --------------------------------------------------------------------

    def replace_profile(self, data: dict[str, Any]) -> Profile:
        profile = profile_from_dict(data)
        self._apply_profile(profile)
        self.event("profile.replaced", detail={"seed": profile.seed})
        return profile

    def patch_profile(self, patch: dict[str, Any]) -> Profile:
        profile = profile_from_dict(merge_patch(self.profile.as_dict(), patch))
        self._apply_profile(profile)
        self.event("profile.patched", detail={"keys": sorted(patch)})
        return profile

    # -- timeline -------------------------------------------------------------------

    def event(self, kind: str, *, app_id: str | None = None, ref: str | None = None,
              detail: dict[str, Any] | None = None) -> None:
        with self.store.transaction():
            record_event(self.store, self.clock.now_us(), kind, app_id=app_id, ref=ref,
                         detail=detail)

    def log_request(self, kind: str, *, app_id: str | None, ref: str | None,
                    detail: dict[str, Any]) -> None:
        """A request on the timeline, written with the next flush (see ``flush``)."""
        self._request_log.append((self.clock.now_us(), kind, app_id, ref, detail))

    def events(self, *, since_id: int = 0, kind: str | None = None, limit: int = 500,
               where: EventFilter | None = None, newest: bool = False) -> list[dict[str, Any]]:
        self._write_request_log()
        return list_events(self.store, since_id=since_id, kind=kind, limit=limit, where=where,
                           newest=newest)

    # -- bank API operations ----------------------------------------------------------

    def _today(self) -> Any:
        return self.clock.now().date()

    def open_account(self, app_id: str, payload: dict[str, Any]) -> Answer:
        serial = payload["request_serial"]
        fields = {k: payload[k] for k in
                  ("name", "id_number", "mobile", "bound_card_number", "bound_card_kind")}
        now = self.clock.now_us()
        return self.idempotency.run(
            app_id, serial, "open_account", fields, now,
            lambda: self.accounts.open(
                app_id=app_id, serial=serial, request=OpeningRequest(**fields),
                policy=self.profile.bank, seed=self.profile.seed, now_us=now,
                today=self._today()))

    def query_opening(self, app_id: str, serial: str) -> Answer:
        return self._answer(None, lambda: self.idempotency.original(app_id, serial, "open_account"))

    def query_account(self, app_id: str, account_no: str) -> Answer:
        def data() -> dict[str, Any]:
            view = self.accounts.get(account_no, app_id)
            view["limits"] = self.accounts.limits(account_no, self.profile.bank,
                                                  self.clock.business_date())
            return view
        return self._answer(None, lambda: _ok(None, data()))

    def set_frozen(self, app_id: str, account_no: str, payload: dict[str, Any],
                   frozen: bool) -> Answer:
        serial = payload["request_serial"]
        operation = "freeze_account" if frozen else "unfreeze_account"
        now = self.clock.now_us()
        return self.idempotency.run(
            app_id, serial, operation, {**payload, "account_no": account_no}, now,
            lambda: self.accounts.set_frozen(account_no, frozen, app_id=app_id, now_us=now,
                                             reason=payload.get("reason") or ""))

    def close_account(self, app_id: str, account_no: str, payload: dict[str, Any]) -> Answer:
        serial = payload["request_serial"]
        now = self.clock.now_us()
        return self.idempotency.run(
            app_id, serial, "close_account", {**payload, "account_no": account_no}, now,
            lambda: self.accounts.close(account_no, app_id=app_id, now_us=now))

    def refund(self, app_id: str, payload: dict[str, Any]) -> Answer:
        serial = payload["request_serial"]
        now = self.clock.now_us()
        return self.idempotency.run(
            app_id, serial, "refund", payload, now,
            lambda: self.refunds.refund(
                app_id=app_id, serial=serial, account_no=payload["account_no"],
                amount_fen=_fen(payload["amount"]), memo=payload.get("memo") or "",
                limits=self.accounts.outflow_limits(self.profile.bank), now_us=now,
                business_date=self.clock.business_date()))

    def query_refund(self, app_id: str, serial: str) -> Answer:
        """The original answer to a refund request (paid or rejected), by its serial."""
        return self._answer(serial, lambda: self.idempotency.original(app_id, serial, "refund"))

    @staticmethod
    def _answer(serial: str | None, produce: Callable[[], Answer]) -> Answer:
        try:
            return produce()
        except BankError as err:
            return error_answer(err, serial)

    # -- control operations (scenario set-up, not part of the bank contract) -----------

    def admin_set_frozen(self, account_no: str, frozen: bool, reason: str = "") -> dict[str, Any]:
        with self.store.transaction():
            return self.accounts.set_frozen(account_no, frozen, app_id=None,
                                            now_us=self.clock.now_us(), reason=reason)

    def set_agreement(self, account_no: str, active: bool) -> dict[str, Any]:
        """Grant or revoke the account's withholding agreement (代扣协议)."""
        with self.store.transaction():
            row = self.accounts.row(account_no)
            self.store.execute("UPDATE accounts SET withholding_agreement = ? WHERE account_no = ?",
                               (int(active), account_no))
            record_event(self.store, self.clock.now_us(), "account.agreement", app_id=row["app_id"],
                         ref=account_no, detail={"active": active})
        return {**self.accounts.get(account_no), "withholding_agreement": active}

    def admin_activate(self, account_no: str) -> dict[str, Any]:
        with self.store.transaction():
            return self.accounts.activate(account_no, now_us=self.clock.now_us(),
                                          reason="approved through the control API")

    def deposit(self, account_no: str, amount: str, memo: str = "") -> dict[str, Any]:
        """Money from outside the bank (e.g. the bound card) into an account."""
        fen = _fen(amount)
        if fen <= 0:
            raise AmountInvalid("a deposit must be positive")
        now = self.clock.now_us()
        with self.store.transaction():
            row = self.accounts.row(account_no)
            if row["status"] == "CLOSED":
                raise AccountClosed(f"account {account_no} is closed")
            self.ledger.post(kind="deposit", at_us=now, business_date=self.clock.business_date(),
                             app_id=row["app_id"], memo=memo or "deposit",
                             legs=[Leg(CLEARING_ACCOUNT, -fen), Leg(account_no, fen)])
            record_event(self.store, now, "account.deposit", app_id=row["app_id"],
                         ref=account_no, detail={"amount": amount})
            return self.accounts.get(account_no)

    def account_detail(self, account_no: str) -> dict[str, Any]:
        view = self.accounts.get(account_no)
        row = self.accounts.row(account_no)
        from simulator.domain.accounts import FROZEN_BY_BANK, FROZEN_BY_PLATFORM

        view["frozen_by"] = [who for who, bit in (("platform", FROZEN_BY_PLATFORM),
                                                  ("bank", FROZEN_BY_BANK)) if row["frozen"] & bit]
        view.update(kind=row["kind"], app_id=row["app_id"], id_number=row["id_number"],
                    mobile=row["mobile"], opening_serial=row["opening_serial"],
                    postings=self.ledger.postings(account_no))
        if row["kind"] == "CLASS_III":
            view["limits"] = self.accounts.limits(account_no, self.profile.bank,
                                                  self.clock.business_date())
        return view

    def invariants(self) -> list[Violation]:
        """Ledger invariant violations; empty when the books are sound."""
        self.flush()
        return check(take_snapshot(self.store))

    def clock_view(self) -> dict[str, Any]:
        nxt = self.scheduler.next_due()
        return {
            "now": self.clock.now().isoformat(),
            "business_date": self.clock.business_date().isoformat(),
            "mode": str(self.clock.mode),
            "cutover": self.clock.cutover.strftime("%H:%M"),
            "next_cutover": self.clock.next_cutover().isoformat(),
            "pending_jobs": self.scheduler.pending_count(),
            "next_job_due": nxt.isoformat() if nxt else None,
        }

    def advance_to(self, target: datetime) -> list[dict[str, Any]]:
        ran = self.scheduler.advance_to(target)
        self.event("clock.advanced", detail={"to": target.isoformat(), "jobs_run": len(ran)})
        self.flush()
        return [{"id": j.id, "kind": j.kind, "due_at": j.due_at.isoformat()} for j in ran]

    def set_clock_mode(self, mode: str) -> None:
        self.clock.set_mode(ClockMode.parse(mode))
        self.profile = self.profile.model_copy(
            update={"clock": self.profile.clock.model_copy(update={"mode": mode})})
        self.store.set_kv(_PROFILE_KEY, json.dumps(self.profile.as_dict(), ensure_ascii=False))
        self.event("clock.mode", detail={"mode": mode})

