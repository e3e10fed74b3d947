"""Where the platform client gets the time: an injectable source.

In production the client asks the system clock; in simulations it asks the bank's virtual
clock (``GET /_admin/clock``) so that "two hours later" means two hours of bank time.
Every time the client records is China Standard Time (aware, +08:00).

Example::

    >>> src = FixedClock(datetime(2026, 1, 6, 10, 0, tzinfo=CST))
    >>> src.now().isoformat()
    '2026-01-06T10:00:00+08:00'
    >>> src.advance(3600).now().hour
    11
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Protocol

import httpx

from platform_client.errors import BankUnavailable

CST = timezone(timedelta(hours=8), "CST")


class ClockSource(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...

    def business_date(self) -> date:
        """The bank's current business date (batch files carry it)."""
        ...


class SystemClock:
    """The machine's clock; the business date is the calendar date in China."""

    def now(self) -> datetime:
        return datetime.now(CST)

    def business_date(self) -> date:
        return self.now().date()


class FixedClock:
    """A clock that moves only when told (unit tests)."""

    def __init__(self, at: datetime) -> None:
        self._at = at

    def now(self) -> datetime:
        return self._at

    def business_date(self) -> date:
        return self._at.astimezone(CST).date()

    def advance(self, seconds: int) -> FixedClock:
        self._at += timedelta(seconds=seconds)
        return self


class BankClock:
    """The bank's virtual clock, read through its control API at every call."""

    def __init__(self, admin_url: str, admin_token: str | None = None, timeout_s: float = 10.0) -> None:
        headers = {"X-Admin-Token": admin_token} if admin_token else {}
        self._http = httpx.Client(base_url=admin_url, headers=headers, timeout=timeout_s)

    def _view(self) -> dict[str, str]:
        try:
            response = self._http.get("/clock")
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise BankUnavailable(f"cannot read the bank's clock: {exc}") from None
        view: dict[str, str] = response.json()
        return view

    def now(self) -> datetime:
        return datetime.fromisoformat(self._view()["now"])

    def business_date(self) -> date:
        return date.fromisoformat(self._view()["business_date"])

    def close(self) -> None:
        self._http.close()


def wechat_day(moment: datetime, cutover: str) -> date:
    """The WeChat bill date a payment at ``moment`` belongs to (``cutover`` "HH:MM", Beijing).

    >>> wechat_day(datetime(2026, 1, 5, 23, 30, tzinfo=CST), "23:00")
    datetime.date(2026, 1, 6)
    """
    hh, mm = (int(x) for x in cutover.split(":"))
    local = moment.astimezone(CST)
    day = local.date()
    if (hh, mm) != (0, 0) and local.time() >= time(hh, mm):
        day += timedelta(days=1)
    return day
