"""The bank's file desk: completed uploads in, jobs on the clock, files out.

A completed upload (the SFTP server calls :meth:`FileDesk.file_complete`) is an image or a
batch file. A batch file is validated whole at once (:mod:`simulator.domain.intake`): a
refused file is owed a rejection file and moves no money; an accepted one is processed
``batches.processing_delay`` later by a job, and its return file is owed
``batches.return_delay`` after that, on the virtual clock. Statements are owed at every
day cutover. Every job commits together with its effects, so each runs exactly once.

Files go out only after the work they describe has committed: whatever owes a file
records it (a row with ``published = 0``) in its own transaction, and
:meth:`FileDesk.publish` writes owed files after the commit (the Bank calls it from
``flush``) and at start. The files are deterministic from committed rows, so one written
but not yet marked before a crash is written again byte for byte; a platform never sees
a file for work a crash undid. At start the desk also re-takes uploads that a crash left
between their final name and the commit of their intake.
"""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.codec import identify, rejection_file_name
from contracts.money import format_fen
from simulator.bankfiles import return_file_names, write_rejection, write_return, write_statement
from simulator.clock import from_us, parse_duration
from simulator.config import FileFaultAction
from simulator.domain import images
from simulator.domain.batchrecords import adopt_legacy, manifest_records
from simulator.domain.intake import accept_file
from simulator.domain.outcomes import decide_file_fault
from simulator.domain.processing import batch_progress, process_batch
from simulator.errors import BankError, FileRejected, FileStructure, NotFound
from simulator.events import record_event
from simulator.scheduler import Job

if TYPE_CHECKING:
    from simulator.bank import Bank

log = logging.getLogger("banksim.files")


class FileDesk:
    def __init__(self, bank: Bank) -> None:
        self.bank = bank
        s = bank.scheduler
        s.register_sliced("batch.process", self._process)
        s.register("batch.return", self._return)
        s.register("image.review", self._review)
        s.register("statement.daily", self._statements)
        # A hint, not the truth: the tables say what is owed; this only saves the queries
        # when nothing can be (it is set by anything that may owe a file, even if rolled back).
        self._maybe_owed = True

    # -- uploads ------------------------------------------------------------------------

    def file_complete(self, app_id: str, area: str, name: str, path: Path) -> dict[str, Any]:
        """Take a completed upload; returns what the bank made of it (also on the timeline)."""
        bank = self.bank
        platform = bank.profile.platform(app_id)
        if platform is None:
            raise NotFound(f"no platform {app_id}")
        now = bank.clock.now_us()
        if area == "images":
            outcome = self._image(app_id, name, path, now)
        elif area == "batches":
            outcome = self._batch(app_id, name, path, now)
        else:
            raise NotFound(f"no upload area {area!r}")
        # Jobs due now (none in the normal flow) run at once, like the bank's own desk.
        bank.scheduler.run_due()
        bank.flush()
        return outcome

    def _image(self, app_id: str, name: str, path: Path, now: int) -> dict[str, Any]:
        bank = self.bank
        settings = bank.profile.images
        try:
            with bank.store.transaction():
                got = images.receive_image(bank.store, app_id=app_id, file_name=name, path=path,
                                           max_bytes=settings.max_bytes, now_us=now)
                if got.first_for_review:
                    due = bank.clock.now() + parse_duration(settings.review_delay)
                    bank.scheduler.schedule("image.review", due, {"account_no": got.account_no},
                                            dedupe_key=f"review:{got.account_no}:{now}")
            return {"accepted": True, "account_no": got.account_no, "side": got.side}
        except BankError as err:
            with bank.store.transaction():
                m = images.NAME.match(name)
                if m and bank.store.one("SELECT 1 FROM accounts WHERE account_no = ? AND app_id = ?",
                                        (m["account"], app_id)):
                    bank.store.execute(
                        "UPDATE accounts SET image_status = 'REJECTED', image_reason = ? "
                        "WHERE account_no = ?", (err.detail or err.entry.message, m["account"]))
                record_event(bank.store, now, "image.refused", app_id=app_id, ref=name,
                             detail={"code": err.code, "reason": err.detail})
            return {"accepted": False, "code": err.code, "reason": err.detail}

    def _batch(self, app_id: str, name: str, path: Path, now: int) -> dict[str, Any]:
        bank = self.bank
        platform = bank.profile.platform(app_id)
        assert platform is not None
        settings = bank.profile.batches
        try:
            with bank.store.transaction():
                accepted = accept_file(bank.store, app_id=app_id, platform=platform, file_name=name,
                                       path=path, max_bytes=settings.max_file_bytes,
                                       business_date=bank.clock.business_date(), now_us=now,
                                       previous_day_ok=settings.accept_previous_business_day)
                due = bank.clock.now() + parse_duration(settings.processing_delay)
                bank.scheduler.schedule("batch.process", due,
                                        {"app_id": app_id, "batch_no": accepted.batch_no},
                                        dedupe_key=f"process:{app_id}:{accepted.batch_no}")
                record_event(bank.store, now, "batch.accepted", app_id=app_id,
                             ref=accepted.batch_no,
                             detail={"file": name, "kind": accepted.kind,
                                     "records": accepted.record_count,
                                     "total": format_fen(accepted.total_fen)})
            return {"accepted": True, "batch_no": accepted.batch_no,
                    "records": accepted.record_count}
        except FileRejected as rej:
            return self._reject(app_id, name, rej, now)
        except Exception as exc:  # the platform must always hear back about its file
            log.exception("intake of %s for %s failed unexpectedly", name, app_id)
            return self._reject(app_id, name, FileStructure(
                f"the bank could not read this file ({type(exc).__name__}); nothing was applied"), now)

    def _reject(self, app_id: str, name: str, rej: FileRejected, now: int) -> dict[str, Any]:
        bank = self.bank
        # Batch number and date only when the name follows the contract; never invented.
        found = identify(name)
        batch_no = str(found[1]["batch"]) if found else None
        reject_name = rejection_file_name(name, from_us(now).replace(tzinfo=None))
        self._maybe_owed = True
        with bank.store.transaction():
            bank.store.execute(
                "INSERT INTO rejections(app_id, file_name, batch_no, code, reason, line, reject_file, "
                "at_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (app_id, name, batch_no, rej.code, rej.detail or "", rej.line, reject_name, now))
            record_event(bank.store, now, "batch.rejected", app_id=app_id, ref=name,
                         detail={"code": rej.code, "reason": rej.detail, "line": rej.line,
                                 "file": reject_name})
        return {"accepted": False, "code": rej.code, "reason": rej.detail, "line": rej.line,
                "rejection_file": reject_name}

    # -- jobs ---------------------------------------------------------------------------

    def _process(self, job: Job, deadline: float | None) -> bool:
        """Process the batch a slice at a time (see the scheduler's sliced jobs); True when
        done. Once the last record is decided: its file fault, and the return job."""
        bank = self.bank
        app_id, batch_no = job.payload["app_id"], job.payload["batch_no"]
        summary = process_batch(bank.store, app_id=app_id, batch_no=batch_no,
                                settings=bank.profile.batches, policy=bank.profile.bank,
                                seed=bank.profile.seed, now_us=bank.clock.now_us(),
                                business_date=bank.clock.business_date(), deadline=deadline)
        if summary is None:
            return True
        if not summary.done:
            return False
        kind = bank.store.scalar("SELECT kind FROM batches WHERE app_id = ? AND batch_no = ?",
                                 (app_id, batch_no))
        fault = decide_file_fault(bank.profile.batches, bank.profile.seed, app_id, str(kind), batch_no)
        action, fault_name = fault if fault else (None, None)
        bank.store.execute(
            "UPDATE batches SET file_fault = ? WHERE app_id = ? AND batch_no = ?",
            (json.dumps({"name": fault_name, **action.model_dump(exclude_defaults=True)})
             if action else None, app_id, batch_no))
        record_event(bank.store, bank.clock.now_us(), "batch.processed", app_id=app_id,
                     ref=batch_no, detail={"success": summary.success_count,
                                           "failed": summary.fail_count, "by_code": summary.by_code,
                                           "file_fault": fault_name})
        if action is not None and action.never:
            return True
        delay = parse_duration(bank.profile.batches.return_delay)
        if action is not None and action.late:
            delay += parse_duration(action.late)
        bank.scheduler.schedule("batch.return", bank.clock.now() + delay,
                                {"app_id": app_id, "batch_no": batch_no},
                                dedupe_key=f"return:{app_id}:{batch_no}")
        return True

    def _return(self, job: Job) -> None:
        bank = self.bank
        app_id, batch_no = job.payload["app_id"], job.payload["batch_no"]
        row = bank.store.one("SELECT file_fault FROM batches WHERE app_id = ? AND batch_no = ?",
                             (app_id, batch_no))
        assert row is not None
        fault = _fault(row["file_fault"])
        file_name = bank.store.scalar("SELECT file_name FROM batches WHERE app_id = ? AND batch_no = ?",
                                      (app_id, batch_no))
        names = return_file_names(str(file_name), fault)
        self._maybe_owed = True
        bank.store.execute(
            "UPDATE batches SET state = 'RETURNED', returned_us = ?, return_files = ? "
            "WHERE app_id = ? AND batch_no = ?",
            (bank.clock.now_us(), json.dumps(names), app_id, batch_no))
        record_event(bank.store, bank.clock.now_us(), "batch.returned", app_id=app_id,
                     ref=batch_no, detail={"files": names})

    def _review(self, job: Job) -> None:
        bank = self.bank
        images.review(bank.store, account_no=job.payload["account_no"],
                      min_bytes=bank.profile.images.min_bytes, now_us=bank.clock.now_us())

    def _statements(self, job: Job) -> None:
        """At a cutover: statements of the business date that just ended, then the next job."""
        bank = self.bank
        ended = bank.clock.business_date(bank.clock.now() - timedelta(microseconds=1))
        self._maybe_owed = True
        for p in bank.profile.platforms:
            for account in (p.supervision_account, p.settlement_account):
                bank.store.execute(
                    "INSERT INTO statements(app_id, account_no, business_date) VALUES (?, ?, ?) "
                    "ON CONFLICT DO NOTHING", (p.app_id, account, ended.isoformat()))
        record_event(bank.store, bank.clock.now_us(), "statement.written",
                     detail={"business_date": ended.isoformat()})
        self.schedule_statements()

    def schedule_statements(self) -> None:
        nxt = self.bank.clock.next_cutover()
        self.bank.scheduler.schedule("statement.daily", nxt, {},
                                     dedupe_key=f"statement:{nxt.isoformat()}")

    # -- publication --------------------------------------------------------------------

    def publish(self) -> None:
        """Write every file owed by committed work, then mark it published.

        Call only when nothing is uncommitted (the Bank's flush does). Each file is written
        under a temporary name and renamed, so no platform ever sees half of one; after a
        crash, a file written but not yet marked is simply written again, byte for byte.
        """
        if not self._maybe_owed:
            return
        bank = self.bank
        store = bank.store
        for row in store.all("SELECT app_id, batch_no, file_fault FROM batches "
                             "WHERE state = 'RETURNED' AND published = 0"):
            platform = bank.profile.platform(row["app_id"])
            resent_as = json.loads(row["file_fault"]).get("resent_as") if row["file_fault"] else None
            write_return(store, bank.outbox, app_id=row["app_id"],
                         merchant=platform.merchant if platform else "", batch_no=row["batch_no"],
                         fault=None if resent_as else _fault(row["file_fault"]), name=resent_as)
            self._mark("UPDATE batches SET published = 1 WHERE app_id = ? AND batch_no = ?",
                       (row["app_id"], row["batch_no"]))
        for row in store.all("SELECT * FROM rejections WHERE published = 0"):
            found = identify(row["file_name"])
            write_rejection(bank.outbox, app_id=row["app_id"], file_name=row["file_name"],
                            batch_no=row["batch_no"], business_date=found[1]["date"] if found else None,
                            code=row["code"], reason=row["reason"], line=row["line"], at_us=row["at_us"])
            self._mark("UPDATE rejections SET published = 1 WHERE id = ?", (row["id"],))
        for row in store.all("SELECT * FROM statements WHERE published = 0"):
            write_statement(store, bank.outbox, app_id=row["app_id"], account_no=row["account_no"],
                            business_date=date.fromisoformat(row["business_date"]))
            self._mark("UPDATE statements SET published = 1 WHERE account_no = ? AND business_date = ?",
                       (row["account_no"], row["business_date"]))
        self._maybe_owed = False

    def _mark(self, sql: str, params: tuple[Any, ...]) -> None:
        with self.bank.store.transaction():
            self.bank.store.execute(sql, params)
        self.bank.store.flush()

    def recover(self) -> None:
        """At start: drop unfinished files, adopt an older version's batch records, publish
        what is owed, re-take stranded uploads."""
        bank = self.bank
        bank.outbox.remove_partials()
        if bank.store.one("SELECT 1 FROM batch_records LIMIT 1") is not None:
            with bank.store.transaction():
                log.warning("moved %d batches of an older version into chunks", adopt_legacy(bank.store))
        self._maybe_owed = True
        self.publish()
        for p in bank.profile.platforms:
            folder = bank.outbox.jail(p.app_id) / "upload" / "batches"
            for path in sorted(folder.iterdir()):
                name = path.name
                if not path.is_file() or name.startswith(".") or name.endswith((".tmp", ".part")):
                    continue
                known = bank.store.one(
                    "SELECT 1 FROM batches WHERE app_id = ? AND file_name = ? UNION ALL "
                    "SELECT 1 FROM rejections WHERE app_id = ? AND file_name = ? LIMIT 1",
                    (p.app_id, name, p.app_id, name))
                if known is None:
                    log.warning("taking %s for %s again: it was complete before a restart", name, p.app_id)
                    self.file_complete(p.app_id, "batches", name, path)

    # -- control API ----------------------------------------------------------------------

    def batches(self, app_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM batches" + (" WHERE app_id = ?" if app_id else "") + " ORDER BY received_us"
        return [self._batch_view(dict(r)) for r in self.bank.store.all(sql, (app_id,) if app_id else ())]

    def _batch_view(self, b: dict[str, Any]) -> dict[str, Any]:
        # PROCESSING: some slices of the batch have committed, not all (the job is running).
        state, decided = b["state"], b["record_count"]
        if state == "ACCEPTED":
            decided = batch_progress(self.bank.store, b["app_id"], b["batch_no"])
            state = "ACCEPTED" if decided is None else "PROCESSING"
        return {
            "app_id": b["app_id"], "batch_no": b["batch_no"], "kind": b["kind"],
            "file_name": b["file_name"], "business_date": b["business_date"], "state": state,
            "record_count": b["record_count"], "processed_records": decided or 0,
            "total": format_fen(b["total_fen"]),
            "success_count": b["success_count"], "success_amount": format_fen(b["success_fen"]),
            "received_at": from_us(b["received_us"]).isoformat(),
            "processed_at": from_us(b["processed_us"]).isoformat() if b["processed_us"] else None,
            "returned_at": from_us(b["returned_us"]).isoformat() if b["returned_us"] else None,
            "return_files": json.loads(b["return_files"]),
            "file_fault": json.loads(b["file_fault"]) if b["file_fault"] else None,
        }

    def manifest(self, app_id: str, batch_no: str) -> dict[str, Any]:
        """What the bank decided for every record, and why (which rule, rate or check)."""
        b = self.bank.store.one("SELECT * FROM batches WHERE app_id = ? AND batch_no = ?",
                                (app_id, batch_no))
        if b is None:
            raise NotFound(f"no batch {batch_no} for {app_id}")
        records = manifest_records(self.bank.store, app_id, batch_no, limit=100_000)
        return {**self._batch_view(dict(b)), "records": records}

    def force(self, app_id: str, batch_no: str, step: str) -> list[dict[str, Any]]:
        """Run the batch's pending ``process`` or ``return`` job now."""
        key = f"{step}:{app_id}:{batch_no}"
        bank = self.bank
        changed = bank.store.execute(
            "UPDATE jobs SET due_us = ? WHERE dedupe_key = ? AND state = 'pending'",
            (bank.clock.now_us(), key)).rowcount
        if not changed:
            if step == "return":
                return [self._resend(app_id, batch_no)]
            raise NotFound(f"no pending {step} job for batch {batch_no}")
        ran = bank.scheduler.run_due()
        bank.flush()
        return [{"id": j.id, "kind": j.kind} for j in ran]

    def _resend(self, app_id: str, batch_no: str) -> dict[str, Any]:
        """Send a processed batch's return file again, complete and fault-free (补发回盘).

        What an operator gets by calling the bank when a return file never came, came cut
        off or lacks records: ``<stem>_RET.txt`` if none was written under that name yet,
        else the next free ``<stem>_RET_R<n>.txt``. Published after commit like any other.
        """
        bank = self.bank
        b = bank.store.one("SELECT processed_us, file_name, return_files, file_fault FROM batches "
                           "WHERE app_id = ? AND batch_no = ?", (app_id, batch_no))
        if b is None:
            raise NotFound(f"no batch {batch_no} for {app_id}")
        if b["processed_us"] is None:
            raise NotFound(f"batch {batch_no} is not processed yet: process it first")
        written = json.loads(b["return_files"])
        name = return_file_names(str(b["file_name"]), None)[0]
        copy = 0
        while name in written:
            copy += 1
            name = return_file_names(str(b["file_name"]), None)[0].replace("_RET.txt", f"_RET_R{copy}.txt")
        fault = json.loads(b["file_fault"]) if b["file_fault"] else {"name": None}
        fault["resent_as"] = name
        now = bank.clock.now_us()
        with bank.store.transaction():
            bank.store.execute(
                "UPDATE batches SET state = 'RETURNED', returned_us = coalesce(returned_us, ?), "
                "return_files = ?, file_fault = ?, published = 0 WHERE app_id = ? AND batch_no = ?",
                (now, json.dumps([*written, name]), json.dumps(fault), app_id, batch_no))
            record_event(bank.store, now, "batch.return_resent", app_id=app_id, ref=batch_no,
                         detail={"file": name})
        self._maybe_owed = True
        bank.flush()
        return {"kind": "batch.return_resent", "file": name}

    def rejections(self, app_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM rejections" + (" WHERE app_id = ?" if app_id else "") + " ORDER BY id"
        return [{**dict(r), "at": from_us(r["at_us"]).isoformat()}
                for r in self.bank.store.all(sql, (app_id,) if app_id else ())]


def _fault(stored: str | None) -> FileFaultAction | None:
    if not stored:
        return None
    data = json.loads(stored)
    data.pop("name", None)
    data.pop("resent_as", None)
    return FileFaultAction(**data)
