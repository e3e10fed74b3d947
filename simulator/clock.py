"""The bank's one source of time: a virtual clock in China Standard Time.

Everything that "happens later" in the bank (return files, settlement, image review)
is a job on :class:`simulator.scheduler.Scheduler`, driven by this clock, so tests
advance time instead of sleeping. Three modes:

* ``manual``: time stands still until someone advances it (tests, operators);
* ``realtime``: virtual time follows the wall clock from an anchor;
* ``accelerated:N``: virtual time runs N times faster than the wall clock.

The clock's state lives in the store's ``kv`` table under ``clock.*`` keys, so a
restarted bank neither jumps back in time nor loses the time that passed while it was
down (in realtime/accelerated modes the anchor pair makes the downtime count).

Times are stored as integer microseconds since the Unix epoch (:func:`to_us`,
:func:`from_us`); every datetime handed out is aware and in :data:`CST`.

Example::

    store = Store.open(None)
    clock = VirtualClock(store, start=parse_datetime("2026-11-23T09:00"),
                         mode=ClockMode.parse("manual"), cutover=time(23, 0))
    clock.now()                 # datetime(2026, 11, 23, 9, 0, tzinfo=CST)
    clock.business_date()       # date(2026, 11, 23)
    clock.next_cutover()        # datetime(2026, 11, 23, 23, 0, tzinfo=CST)
"""

from __future__ import annotations

import math
import re
import time as _time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Literal

from simulator.store import Store

#: China Standard Time. A fixed offset on purpose: China has no daylight saving, and a
#: fixed offset makes every cutover exactly 24 hours after the previous one.
CST = timezone(timedelta(hours=8), "CST")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_NOON = time(12, 0)

_KEY_MODE = "clock.mode"
_KEY_VIRTUAL = "clock.virtual_us"
_KEY_WALL = "clock.anchor_wall"


def _aware(dt: datetime) -> datetime:
    # Naive datetimes are refused rather than guessed: a naive datetime.now() is the
    # host's local time, and silently reading it as CST would shift events by hours.
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt.isoformat()}: attach a time zone (e.g. CST)")
    return dt.astimezone(CST)


def to_us(dt: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (exact integer arithmetic)."""
    return (_aware(dt) - _EPOCH) // _ONE_US


def from_us(us: int) -> datetime:
    """The aware CST datetime of ``us`` microseconds since the Unix epoch."""
    return (_EPOCH + timedelta(microseconds=us)).astimezone(CST)


def parse_datetime(text: str) -> datetime:
    """Parse ISO 8601 (``2026-11-23T09:00``, ``...+08:00``, ``...Z``); naive means CST."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"not an ISO 8601 date-time: {text!r} (e.g. 2026-11-23T09:00:00+08:00)"
        ) from None
    return dt.replace(tzinfo=CST) if dt.tzinfo is None else dt.astimezone(CST)


_COMPACT = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", re.IGNORECASE)
_ISO = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", re.IGNORECASE)


def parse_duration(text: str) -> timedelta:
    """Parse ``90s``, ``20m``, ``1h30m``, ``2d``, ``1d2h`` or ISO-style ``PT20M``/``P1DT2H``.

    Only positive durations make sense for "later", so zero and negative are refused.
    """
    stripped = text.strip()
    match = _COMPACT.fullmatch(stripped) or _ISO.fullmatch(stripped)
    # Both patterns also match "" and "P"/"PT" with every group empty; those are not
    # durations.
    if match is None or not any(match.groups()) or stripped.upper().endswith("T"):
        raise ValueError(
            f"not a duration: {text!r} (use e.g. 90s, 20m, 1h30m, 2d, 1d2h or PT20M)"
        )
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    result = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if result <= timedelta(0):
        raise ValueError(f"duration must be positive, got {text!r}")
    return result


@dataclass(frozen=True)
class ClockMode:
    """How virtual time moves: ``manual`` (factor 0), ``realtime`` (1), ``accelerated`` (N).

    Example::

        ClockMode.parse("accelerated:60")   # ClockMode(kind="accelerated", factor=60.0)
        str(ClockMode.parse("realtime"))    # "realtime"
    """

    kind: Literal["manual", "realtime", "accelerated"]
    factor: float

    def __post_init__(self) -> None:
        expected = {"manual": 0.0, "realtime": 1.0}.get(self.kind)
        if self.kind not in ("manual", "realtime", "accelerated"):
            raise ValueError(f"unknown clock mode kind {self.kind!r}")
        if expected is not None and self.factor != expected:
            raise ValueError(f"{self.kind} mode has factor {expected:g}, got {self.factor}")
        if self.kind == "accelerated" and not (math.isfinite(self.factor) and self.factor > 0):
            raise ValueError(f"accelerated factor must be a finite number > 0, got {self.factor}")

    @classmethod
    def parse(cls, text: str) -> ClockMode:
        """Parse ``manual``, ``realtime`` or ``accelerated:N`` (N > 0, may be fractional)."""
        value = text.strip().lower()
        if value == "manual":
            return cls("manual", 0.0)
        if value == "realtime":
            return cls("realtime", 1.0)
        name, sep, factor_text = value.partition(":")
        if name == "accelerated" and sep:
            try:
                factor = float(factor_text)
            except ValueError:
                factor = math.nan
            if math.isfinite(factor) and factor > 0:
                return cls("accelerated", factor)
        raise ValueError(
            f"not a clock mode: {text!r} (use manual, realtime or accelerated:N with N > 0)"
        )

    def __str__(self) -> str:
        if self.kind != "accelerated":
            return self.kind
        factor = int(self.factor) if self.factor.is_integer() else self.factor
        return f"accelerated:{factor!r}"


class VirtualClock:
    """The bank's virtual time, persisted in the store so restarts continue seamlessly.

    Only the scheduler moves a manual clock forward (see ``Scheduler.advance``); in
    realtime/accelerated modes ``now = anchor_virtual + factor * (wall() - anchor_wall)``.
    Time handed out never goes backwards, even if the wall clock does.

    Example::

        clock = VirtualClock(store, start=parse_datetime("2026-11-23T09:00"),
                             mode=ClockMode.parse("accelerated:60"), cutover=time(23, 0))
        # ten wall seconds later: clock.now() is 09:10 CST
    """

    def __init__(
        self,
        store: Store,
        *,
        start: datetime,
        mode: ClockMode,
        cutover: time,
        wall: Callable[[], float] = _time.time,
    ) -> None:
        if cutover.tzinfo is not None:
            raise ValueError("cutover is a wall time in CST; pass it without tzinfo")
        self._store = store
        self._wall = wall
        self._cutover = cutover
        self._mode = mode
        self._virtual_us = to_us(start)
        self._anchor_wall = 0.0
        self._floor_us = self._virtual_us
        if store.get_kv(_KEY_VIRTUAL) is None:
            self._anchor_wall = wall() if mode.kind != "manual" else 0.0
            self._persist()
        else:
            # A restart continues the persisted clock, mode included (an operator's
            # set_mode survives restarts); ``start`` and ``mode`` only seed a new store.
            self._reload()

    @property
    def mode(self) -> ClockMode:
        return self._mode

    @property
    def cutover(self) -> time:
        """The day cutover (日切) as a CST wall time; see :meth:`business_date`."""
        return self._cutover

    def now_us(self) -> int:
        """Current virtual time in microseconds since the Unix epoch."""
        if self._mode.kind == "manual":
            return self._virtual_us
        us = max(self._position(self._wall()), self._floor_us)
        self._floor_us = us
        return us

    def now(self) -> datetime:
        """Current virtual time, aware, in CST."""
        return from_us(self.now_us())

    def set_mode(self, mode: ClockMode) -> None:
        """Switch mode without a jump: re-anchor at the current instant, then persist."""
        wall = self._wall()
        current = self._virtual_us if self._mode.kind == "manual" else self._position(wall)
        self._virtual_us = max(current, self._floor_us)
        self._floor_us = self._virtual_us
        self._anchor_wall = wall
        self._mode = mode
        self._persist()

    def set_cutover(self, cutover: time) -> None:
        """Change the day cutover (a profile change at runtime); persisted."""
        if cutover.tzinfo is not None:
            raise ValueError("cutover is a wall time in CST; pass it without tzinfo")
        self._cutover = cutover
        self._persist()

    def business_date(self, at: datetime | None = None) -> date:
        """The business date (营业日) of ``at`` (default now), given the day cutover (日切).

        * cutover 00:00: the calendar date in CST;
        * cutover at or after 12:00 (e.g. 23:00): instants at/after the cutover already
          belong to the NEXT date (2026-11-23 23:00 is business date 2026-11-24);
        * cutover before 12:00 (e.g. 02:00): instants before the cutover still belong to
          the PREVIOUS date (2026-11-24 01:59 is business date 2026-11-23).
        """
        moment = self.now() if at is None else _aware(at)
        day, wall_time = moment.date(), moment.time()
        if self._cutover >= _NOON:
            return day + timedelta(days=1) if wall_time >= self._cutover else day
        return day - timedelta(days=1) if wall_time < self._cutover else day

    def next_cutover(self, after: datetime | None = None) -> datetime:
        """The first instant strictly after ``after`` (default now) where the date changes."""
        moment = self.now() if after is None else _aware(after)
        candidate = datetime.combine(moment.date(), self._cutover, tzinfo=CST)
        # Fixed offset, no DST: the next cutover is always within 24 hours.
        return candidate if candidate > moment else candidate + timedelta(days=1)

    def reset(self, start: datetime) -> None:
        """Put time back to ``start``; only for a full state reset of the bank."""
        self._virtual_us = self._floor_us = to_us(start)
        self._anchor_wall = self._wall() if self._mode.kind != "manual" else 0.0
        self._persist()

    # -- used by the scheduler -------------------------------------------------------

    def _move_to(self, t: datetime | int) -> None:
        """Move forward to ``t`` (datetime or epoch microseconds), persisting in the
        caller's transaction so the position commits with the job that caused it.

        Refuses to go behind any time already handed out. In realtime/accelerated modes
        this re-anchors, i.e. jumps ahead and keeps running from there.
        """
        target = t if isinstance(t, int) else to_us(t)
        if target < self._floor_us:
            raise ValueError(
                f"the clock never moves backwards: {from_us(target).isoformat()} is before "
                f"{from_us(self._floor_us).isoformat()}"
            )
        self._virtual_us = self._floor_us = target
        if self._mode.kind != "manual":
            self._anchor_wall = self._wall()
        self._persist()

    def _reload(self) -> None:
        """Re-read the persisted state, e.g. after a rolled-back job took its move with it."""
        mode_text = self._store.get_kv(_KEY_MODE)
        virtual = self._store.get_kv(_KEY_VIRTUAL)
        wall = self._store.get_kv(_KEY_WALL)
        if mode_text is not None:
            self._mode = ClockMode.parse(mode_text)
        if virtual is not None:
            self._virtual_us = self._floor_us = int(virtual)
        self._anchor_wall = float(wall) if wall is not None else self._wall()

    def _position(self, wall: float) -> int:
        return self._virtual_us + round((wall - self._anchor_wall) * self._mode.factor * 1e6)

    def _persist(self) -> None:
        # One (possibly nested) transaction: the three keys only make sense together.
        with self._store.transaction():
            self._store.set_kv(_KEY_MODE, str(self._mode))
            self._store.set_kv(_KEY_VIRTUAL, str(self._virtual_us))
            self._store.set_kv(_KEY_WALL, repr(self._anchor_wall))
