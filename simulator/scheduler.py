"""Jobs due on the virtual clock: everything in the bank that "happens later".

A job is a row of the ``jobs`` table (kind, due time, JSON payload, optional dedupe key).
Handlers are registered by kind at start-up. Jobs run in ``(due_at, id)`` order, each in
its own transaction together with its handler's effects, its ``done`` mark, its event
and the clock position, so after a crash every job has either fully run once or will
run on the next advance; never twice.

Manual mode: tests and operators call :meth:`Scheduler.advance`. Realtime/accelerated
modes: a background task calls :meth:`Scheduler.run_due`, sleeping
:meth:`Scheduler.seconds_until_next_due` in between.

Sliced jobs (a large batch): a handler registered with ``sliced=True`` does its work a
slice at a time, each slice committing with its own progress, and says when it is done.
With :attr:`Scheduler.slice_seconds` set (the server sets it) one call runs slices for
about that long and stops with the job still pending and *in progress*; the caller
yields to its event loop (:meth:`Scheduler.finish_in_progress`) so requests are answered
between slices, then calls again. A job in progress is always the next one to run (no
other job starts before it is done) and the clock does not move past it, so jobs still
run in ``(due_at, id)`` order and exactly once. Without ``slice_seconds`` (in-process
use, tests) a sliced job runs to its end in one call, in one transaction.

Example::

    scheduler = Scheduler(store, clock)
    scheduler.register("return_file", lambda job: write_return_file(job.payload["batch"]))
    with store.transaction():
        accept_batch(...)                      # the job commits with the change
        scheduler.schedule("return_file", clock.now() + parse_duration("20m"),
                           {"batch": "B1"}, dedupe_key="return_file:B1")
    ran = scheduler.advance(timedelta(hours=1))   # the return file is written now
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from simulator.clock import VirtualClock, from_us, to_us
from simulator.events import record_event
from simulator.store import Store

log = logging.getLogger(__name__)
# The event loop's time between slices: a request needs several turns (read it, run the
# handler, commit, write the answer), and one whose handler runs in a worker thread needs
# the loop to wait a moment so that thread gets Python's lock. Two short waits (a turn with
# nothing to do costs microseconds; each wait ~1 ms) between turns.
_YIELD_WAITS = (0.0, 0.0, 0.0, 0.001, 0.0, 0.0, 0.0, 0.001, 0.0, 0.0)

JobState = Literal["pending", "done", "failed"]


@dataclass(frozen=True)
class Job:
    """One scheduled job. ``state``/``ran_at``/``error`` describe its outcome so far."""

    id: int
    kind: str
    due_at: datetime
    payload: dict[str, Any]
    dedupe_key: str | None
    state: JobState = "pending"
    ran_at: datetime | None = None
    error: str | None = None


_COLUMNS = "id, kind, due_us, payload, dedupe_key, state, ran_us, error"
# The kv row naming the sliced job that has begun and not finished (at most one).
IN_PROGRESS_KEY = "scheduler.in_progress"
# A sliced handler: does a slice (or, with no deadline, all of it); True once finished.
SlicedHandler = Callable[[Job, float | None], bool]


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=int(row["id"]),
        kind=str(row["kind"]),
        due_at=from_us(int(row["due_us"])),
        payload=json.loads(row["payload"]),
        dedupe_key=row["dedupe_key"],
        state=row["state"],
        ran_at=None if row["ran_us"] is None else from_us(int(row["ran_us"])),
        error=row["error"],
    )


class Scheduler:
    """Runs persisted jobs when the virtual clock reaches them."""

    def __init__(self, store: Store, clock: VirtualClock) -> None:
        self._store = store
        self._clock = clock
        self._handlers: dict[str, Callable[[Job], None]] = {}
        self._sliced: dict[str, SlicedHandler] = {}
        self._running = False
        self._driver: asyncio.Lock | None = None
        self.slice_seconds: float | None = None
        """Work per call on a sliced job before the call returns (None: run it to its end)."""

    def register(self, kind: str, handler: Callable[[Job], None]) -> None:
        """Attach the handler for ``kind``; a second registration is a wiring bug."""
        if kind in self._handlers or kind in self._sliced:
            raise ValueError(f"a handler for job kind {kind!r} is already registered")
        self._handlers[kind] = handler

    def register_sliced(self, kind: str, handler: SlicedHandler) -> None:
        """Attach a sliced handler: ``handler(job, deadline)`` does slices until
        ``time.perf_counter()`` passes ``deadline`` (None: until done), each slice's effects
        and progress in the job's transaction, and returns True once the job is done."""
        if kind in self._handlers or kind in self._sliced:
            raise ValueError(f"a handler for job kind {kind!r} is already registered")
        self._sliced[kind] = handler

    def schedule(self, kind: str, due_at: datetime, payload: dict[str, Any] | None = None,
                 *, dedupe_key: str | None = None) -> int:
        """Persist a pending job and return its id, inside the caller's transaction if any.

        With a ``dedupe_key`` already used (whatever that job's state), nothing is added
        and the existing job's id is returned. A due time in the past is allowed: the job
        runs at the next advance/run_due, at the then current time.
        """
        body = json.dumps(payload or {}, ensure_ascii=False, sort_keys=True)
        with self._store.transaction():
            cursor = self._store.execute(
                "INSERT INTO jobs(kind, due_us, payload, dedupe_key, created_us) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(dedupe_key) DO NOTHING",
                (kind, to_us(due_at), body, dedupe_key, self._clock.now_us()),
            )
            if cursor.rowcount == 1:
                return int(cursor.lastrowid or 0)
            return int(self._store.scalar("SELECT id FROM jobs WHERE dedupe_key = ?",
                                          (dedupe_key,)))

    def advance(self, delta: timedelta) -> list[Job]:
        """Move the clock forward by ``delta``, running every job that falls due."""
        if delta < timedelta(0):
            raise ValueError(f"cannot advance by a negative duration ({delta})")
        return self.advance_to(from_us(self._clock.now_us() + delta // timedelta(microseconds=1)))

    def advance_to(self, target: datetime) -> list[Job]:
        """Move the clock to ``target``, running every job due at or before it.

        Jobs that handlers schedule inside the window run too, in order. Returns the jobs
        that ran (``state`` "done" or "failed"), in the order they ran.
        """
        target_us = to_us(target)
        if target_us < self._clock.now_us():
            raise ValueError(
                f"cannot advance to {target.isoformat()}: the clock is already at "
                f"{self._clock.now().isoformat()} and never moves backwards"
            )
        ran = self._run_until(target_us)
        # A sliced job still in progress holds the clock at its time; the caller calls again.
        # Realtime/accelerated clocks may have run past target meanwhile; don't pull back.
        if self._clock.now_us() < target_us and not self.in_progress():
            with self._store.transaction():
                self._clock._move_to(target_us)
        return ran

    def run_due(self) -> list[Job]:
        """Run the jobs due by now (realtime/accelerated background task); no clock jump."""
        return self._run_until(self._clock.now_us())

    def in_progress(self) -> int | None:
        """The id of the sliced job that has begun and not finished, if any."""
        value = self._store.get_kv(IN_PROGRESS_KEY)
        return None if value is None else int(value)

    async def finish_in_progress(self, flush: Callable[[], None]) -> list[Job]:
        """Run the job in progress to its end, a call at a time, yielding to the event loop
        in between (requests are answered between slices); ``flush`` commits each call's
        work before the loop runs anything else. Returns the jobs that ran (the job in
        progress and any due after it in the same calls)."""
        ran: list[Job] = []
        # One driver at a time (the control API's advance, the server's ticker): two would
        # run their slices back to back in each other's pauses.
        if self._driver is None:
            self._driver = asyncio.Lock()
        async with self._driver:
            while self.in_progress() is not None:
                ran += await self._slice_and_pause(flush)
        return ran

    async def _slice_and_pause(self, flush: Callable[[], None]) -> list[Job]:
        ran = self.run_due()
        flush()
        # Turns of the loop, so requests that arrived during the slice are answered.
        for wait in _YIELD_WAITS:
            await asyncio.sleep(wait)
        return ran

    def next_sliced_due(self, target: datetime) -> datetime | None:
        """When the first pending sliced job due by ``target`` is due (None: there is none)."""
        if not self._sliced:
            return None
        kinds = json.dumps(sorted(self._sliced))
        due = self._store.scalar(
            "SELECT MIN(due_us) FROM jobs WHERE state = 'pending' AND due_us <= ? AND kind IN "
            "(SELECT value FROM json_each(?))", (to_us(target), kinds))
        return None if due is None else from_us(int(due))

    def pending(self) -> list[Job]:
        rows = self._store.all(
            f"SELECT {_COLUMNS} FROM jobs WHERE state = 'pending' ORDER BY due_us, id"
        )
        return [_job(row) for row in rows]

    def pending_count(self) -> int:
        return int(self._store.scalar("SELECT count(*) FROM jobs WHERE state = 'pending'") or 0)

    def next_due(self) -> datetime | None:
        due = self._store.scalar("SELECT MIN(due_us) FROM jobs WHERE state = 'pending'")
        return None if due is None else from_us(int(due))

    def job(self, job_id: int) -> Job | None:
        row = self._store.one(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return None if row is None else _job(row)

    def seconds_until_next_due(self) -> float | None:
        """Real (wall) seconds until the next job is due: None in manual mode (nothing
        happens by itself) or with nothing pending; 0 if one is already due."""
        mode = self._clock.mode
        due = self.next_due()
        if mode.kind == "manual" or due is None:
            return None
        remaining_us = to_us(due) - self._clock.now_us()
        return 0.0 if remaining_us <= 0 else remaining_us / 1e6 / mode.factor

    # -- running ---------------------------------------------------------------------

    def _run_until(self, target_us: int) -> list[Job]:
        # A handler that advanced the clock itself would run jobs inside another job's
        # transaction and out of order; that is a bug, so refuse it loudly.
        if self._running:
            raise RuntimeError("a job handler must not advance the clock or run jobs")
        self._running = True
        try:
            ran: list[Job] = []
            # Re-query each time: handlers may schedule new jobs inside the window. A job in
            # progress comes first: nothing else starts before it is done.
            while (row := self._next(target_us)) is not None:
                job = self._run_one(_job(row))
                if job.state == "pending":  # a sliced job that is not done yet
                    break
                ran.append(job)
            return ran
        finally:
            self._running = False

    def _next(self, target_us: int) -> sqlite3.Row | None:
        current = self.in_progress()
        if current is not None:
            row = self._store.one(f"SELECT {_COLUMNS} FROM jobs WHERE id = ? AND state = 'pending'",
                                  (current,))
            if row is not None:
                return row
            # Not pending any more (it cannot be, but a stale mark must not hold the queue).
            with self._store.transaction():
                self._store.execute("DELETE FROM kv WHERE key = ?", (IN_PROGRESS_KEY,))
        return self._store.one(
            f"SELECT {_COLUMNS} FROM jobs WHERE state = 'pending' AND due_us <= ? "
            "ORDER BY due_us, id LIMIT 1", (target_us,))

    def _run_one(self, job: Job) -> Job:
        # The handler sees its own due time as "now" (or the current time for a job
        # scheduled in the past).
        at_us = max(self._clock.now_us(), to_us(job.due_at))
        handler = self._handlers.get(job.kind)
        sliced = self._sliced.get(job.kind)
        if handler is None and sliced is None:
            return self._fail(job, at_us, f"no handler registered for job kind {job.kind!r}")
        try:
            with self._store.transaction():
                self._clock._move_to(at_us)
                if sliced is not None:
                    deadline = (None if self.slice_seconds is None
                                else time.perf_counter() + self.slice_seconds)
                    if not sliced(job, deadline):
                        # Its slices so far commit with this mark; the next call goes on.
                        self._store.set_kv(IN_PROGRESS_KEY, str(job.id))
                        return job
                    self._store.execute("DELETE FROM kv WHERE key = ?", (IN_PROGRESS_KEY,))
                else:
                    assert handler is not None
                    handler(job)
                self._store.execute(
                    "UPDATE jobs SET state = 'done', ran_us = ?, error = NULL WHERE id = ?",
                    (at_us, job.id),
                )
                record_event(self._store, at_us, "job.done", ref=str(job.id),
                             detail={"kind": job.kind})
        except Exception as exc:
            # The rollback also undid the clock's persisted move; resync before failing.
            self._clock._reload()
            log.exception("job %s (%s) failed", job.id, job.kind)
            return self._fail(job, at_us, f"{type(exc).__name__}: {exc}")
        except BaseException:
            # A crash-like exit (KeyboardInterrupt, SystemExit): leave the job pending so
            # it runs on the next advance, and keep memory in line with the database.
            self._clock._reload()
            raise
        return self.job(job.id) or job

    def _fail(self, job: Job, at_us: int, error: str) -> Job:
        with self._store.transaction():
            self._clock._move_to(at_us)
            # A sliced job that fails is over: the next job may run (its committed slices
            # stand, each whole; see the handler's docs).
            self._store.execute("DELETE FROM kv WHERE key = ? AND value = ?",
                                (IN_PROGRESS_KEY, str(job.id)))
            self._store.execute(
                "UPDATE jobs SET state = 'failed', ran_us = ?, error = ? WHERE id = ?",
                (at_us, error, job.id),
            )
            record_event(self._store, at_us, "job.failed", ref=str(job.id),
                         detail={"kind": job.kind, "error": error})
        return self.job(job.id) or job
