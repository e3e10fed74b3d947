"""Payment-notification deliveries: what is owed, what is due, and what each attempt did.

A paid order owes one delivery (two when duplicated, none sent when dropped). Each attempt
of a delivery waits for a ``wechat.notify`` job on the scheduler at its due time; the job
only marks the deliveries due by then ``due``. There is one pending job per instant, not
one per delivery: a burst of payments at the same clock time (a bulk test, a busy day) owes
thousands of notifications due together, and one job wakes them all with one indexed
UPDATE instead of thousands of job rows, job runs and job events. Sending is not done here
nor inside any job or transaction: the dispatcher (:mod:`simulator.wechat.dispatcher`) sends
due deliveries after the state is committed and then calls :meth:`Notifications.record`,
which schedules the next attempt per ``wechat.notify.retry_schedule`` relative to the
clock's now, or closes the delivery.

Example::

    notes = Notifications(bank.store, bank.scheduler, bank.clock)
    with bank.store.transaction():
        notes.create(mchid="1900000109", out_trade_no="T1", resource={...}, plan=NotifyPlan(),
                     seed=7)
    bank.scheduler.run_due()            # the first attempt's job marks it due
    [d.id for d in notes.due()]         # what the dispatcher sends next
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from simulator.clock import VirtualClock, from_us, to_us
from simulator.config import NotifySettings
from simulator.domain.wechat_rules import NotifyPlan, notification_id, retry_delay
from simulator.events import record_events
from simulator.scheduler import Job, Scheduler
from simulator.store import Store

JOB_KIND = "wechat.notify"
_IDS_PER_QUERY = 500  # below SQLite's default limit of bound parameters
OUTCOMES = ("SUCCESS", "FAILED", "IGNORED")


@dataclass(frozen=True)
class DueDelivery:
    """A delivery the dispatcher should send now."""

    id: int
    notification_id: str
    mchid: str
    out_trade_no: str
    attempt: int
    due_us: int
    ignore_answer: bool
    resource: str
    notify_url: str
    created_us: int


def _iso(us: int | None) -> str | None:
    return None if us is None else from_us(us).isoformat()


class Notifications:
    def __init__(self, store: Store, scheduler: Scheduler, clock: VirtualClock) -> None:
        self._store = store
        self._scheduler = scheduler
        self._clock = clock
        scheduler.register(JOB_KIND, self._on_due)

    def create(self, *, mchid: str, out_trade_no: str, resource: dict[str, Any],
               plan: NotifyPlan, seed: int) -> None:
        """Owe the notification of a paid order (inside the payment's transaction)."""
        now = self._clock.now_us()
        text = orjson.dumps(resource).decode()  # compact UTF-8 JSON, keys in their order
        first_due = now + plan.delay // timedelta(microseconds=1)
        with self._store.transaction():
            for copy_no in range(1, (1 if plan.drop else plan.copies) + 1):
                self._store.execute(
                    "INSERT INTO wechat_deliveries(notification_id, mchid, out_trade_no, copy_no, "
                    "ignore_answer, resource, state, next_attempt, next_due_us, created_us) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
                    (notification_id(seed, mchid, out_trade_no, copy_no), mchid, out_trade_no,
                     copy_no, int(plan.ignore_answer), text,
                     "dropped" if plan.drop else "scheduled",
                     None if plan.drop else first_due, now))
            if not plan.drop:
                self._wake_at(first_due)

    def _wake_at(self, due_us: int) -> None:
        """Make sure a pending job runs at ``due_us`` (inside the caller's transaction)."""
        # No dedupe key: a job of this instant that already ran must not stop a new one
        # (a payment at the same clock time after a delivery round still needs waking).
        if self._store.one("SELECT 1 FROM jobs WHERE state = 'pending' AND due_us = ? AND kind = ?",
                           (due_us, JOB_KIND)) is None:
            self._scheduler.schedule(JOB_KIND, from_us(due_us))

    def _on_due(self, job: Job) -> None:
        # Every delivery due by now, whatever job scheduled it (older states kept one job
        # per delivery and attempt; marking all that are due covers them too).
        self._store.execute(
            "UPDATE wechat_deliveries SET state = 'due' "
            "WHERE state = 'scheduled' AND next_due_us <= ?", (self._clock.now_us(),))

    def due(self, limit: int = 1000) -> list[DueDelivery]:
        rows = self._store.all(
            "SELECT d.id, d.notification_id, d.mchid, d.out_trade_no, d.next_attempt, "
            "d.next_due_us, d.ignore_answer, d.resource, d.created_us, o.notify_url "
            "FROM wechat_deliveries d JOIN wechat_orders o "
            "ON o.mchid = d.mchid AND o.out_trade_no = d.out_trade_no "
            "WHERE d.state = 'due' ORDER BY d.next_due_us, d.id LIMIT ?", (limit,))
        return [DueDelivery(r["id"], r["notification_id"], r["mchid"], r["out_trade_no"],
                            r["next_attempt"], r["next_due_us"], bool(r["ignore_answer"]),
                            r["resource"], r["notify_url"], r["created_us"]) for r in rows]

    def next_job_due(self) -> datetime | None:
        """When the earliest pending notification job is due (None if there is none)."""
        due = self._store.scalar(
            "SELECT MIN(due_us) FROM jobs WHERE state = 'pending' AND kind = ?", (JOB_KIND,))
        return None if due is None else from_us(int(due))

    def record(self, delivery: DueDelivery, *, sent_us: int, outcome: str,
               http_status: int | None, error: str | None, settings: NotifySettings) -> bool:
        """Write one attempt's outcome and schedule the next attempt or close the delivery.

        Returns False (and writes nothing) when the delivery is no longer the one that was
        sent, e.g. after a reset while the request was on the wire.
        """
        return self.record_many([(delivery, outcome, http_status, error)], sent_us=sent_us,
                                settings=settings)[0]

    def record_many(self, results: Sequence[tuple[DueDelivery, str, int | None, str | None]], *,
                    sent_us: int, settings: NotifySettings) -> list[bool]:
        """:meth:`record` for a round of attempts (delivery, outcome, HTTP status, error), in
        order, in one transaction with a few statements for the whole round; for each,
        whether it was recorded.

        Example::

            notes.record_many([(d1, "SUCCESS", 200, None), (d2, "FAILED", 500, "HTTP 500")],
                              sent_us=clock.now_us(), settings=profile.wechat.notify)
        """
        for _, outcome, _, _ in results:
            if outcome not in OUTCOMES:
                raise ValueError(f"unknown outcome {outcome!r}")
        recorded: list[bool] = []
        attempts: list[tuple[Any, ...]] = []
        closed: list[tuple[str, int]] = []
        retried: list[tuple[int, int, int]] = []
        events: list[tuple[int, str, str | None, str | None, dict[str, Any]]] = []
        with self._store.transaction():
            current = self._current({d.id for d, *_ in results})
            now = self._clock.now()
            for delivery, outcome, http_status, error in results:
                key = (delivery.id, delivery.notification_id, delivery.attempt)
                recorded.append(key in current)
                if key not in current:
                    continue
                current.discard(key)
                attempts.append((delivery.id, delivery.attempt, delivery.due_us, sent_us, outcome,
                                 http_status, error))
                wait = None if outcome == "SUCCESS" else retry_delay(settings, delivery.attempt)
                if outcome == "SUCCESS" or wait is None:
                    closed.append(("delivered" if outcome == "SUCCESS" else "exhausted", delivery.id))
                else:
                    retried.append((delivery.attempt + 1, to_us(now + wait), delivery.id))
                events.append((sent_us, "wechat.notified", None, delivery.out_trade_no,
                               {"notification_id": delivery.notification_id,
                                "attempt": delivery.attempt, "outcome": outcome,
                                "http_status": http_status}))
            conn = self._store.conn
            conn.executemany(
                "INSERT INTO wechat_attempts(delivery_id, attempt, due_us, sent_us, outcome, "
                "http_status, error) VALUES (?, ?, ?, ?, ?, ?, ?)", attempts)
            conn.executemany("UPDATE wechat_deliveries SET state = ?, next_due_us = NULL WHERE id = ?",
                             closed)
            conn.executemany("UPDATE wechat_deliveries SET state = 'scheduled', next_attempt = ?, "
                             "next_due_us = ? WHERE id = ?", retried)
            for due_us in sorted({due for _, due, _ in retried}):
                self._wake_at(due_us)
            if events:
                record_events(self._store, events)
        return recorded

    def _current(self, ids: set[int]) -> set[tuple[int, str, int]]:
        """(id, notification_id, attempt) of those deliveries that are still due."""
        found: set[tuple[int, str, int]] = set()
        ordered = sorted(ids)
        for i in range(0, len(ordered), _IDS_PER_QUERY):
            chunk = ordered[i:i + _IDS_PER_QUERY]
            rows = self._store.all(
                "SELECT id, notification_id, next_attempt FROM wechat_deliveries "
                f"WHERE state = 'due' AND id IN ({', '.join('?' * len(chunk))})", chunk)
            found.update((int(r["id"]), str(r["notification_id"]), int(r["next_attempt"]))
                         for r in rows)
        return found

    def listing(self, out_trade_no: str | None = None) -> list[dict[str, Any]]:
        """Every delivery attempt (and every dropped or still pending delivery), in order."""
        where, params = ("WHERE d.out_trade_no = ?", (out_trade_no,)) if out_trade_no else ("", ())
        rows = self._store.all(
            "SELECT d.id, d.notification_id, d.mchid, d.out_trade_no, d.copy_no, d.state, "
            "d.next_attempt, d.next_due_us, a.attempt, a.due_us, a.sent_us, a.outcome, "
            "a.http_status, a.error FROM wechat_deliveries d "
            f"LEFT JOIN wechat_attempts a ON a.delivery_id = d.id {where} "
            "ORDER BY d.id, a.attempt", params)
        out: list[dict[str, Any]] = []
        for r in rows:
            base = {"delivery_id": r["id"], "notification_id": r["notification_id"],
                    "mchid": r["mchid"], "out_trade_no": r["out_trade_no"], "copy": r["copy_no"],
                    "delivery_state": r["state"]}
            if r["attempt"] is not None:
                out.append({**base, "attempt": r["attempt"], "due": _iso(r["due_us"]),
                            "sent_at": _iso(r["sent_us"]), "outcome": r["outcome"],
                            "http_status": r["http_status"], "error": r["error"]})
        # The attempt each open (or dropped) delivery waits for, so nothing owed is invisible.
        for r in rows:
            if r["state"] in ("scheduled", "due", "dropped") and (
                    r["attempt"] is None or r["attempt"] == r["next_attempt"] - 1):
                out.append({"delivery_id": r["id"], "notification_id": r["notification_id"],
                            "mchid": r["mchid"], "out_trade_no": r["out_trade_no"],
                            "copy": r["copy_no"], "delivery_state": r["state"],
                            "attempt": None if r["state"] == "dropped" else r["next_attempt"],
                            "due": _iso(r["next_due_us"]), "sent_at": None,
                            "outcome": "DROPPED" if r["state"] == "dropped" else "PENDING",
                            "http_status": None, "error": None})
        out.sort(key=lambda item: (item["delivery_id"], item["attempt"] or 0))
        return out
