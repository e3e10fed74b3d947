"""Pure rules of the fake WeChat Pay channel: days, fees, identifiers and notification faults.

Every identifier WeChat would make up (transaction id, openid, code_url token, refund id,
notification id, nonces) is derived from the profile seed and the merchant's own keys by
hashing, never drawn from a shared random stream, so the same profile, seed and requests
give the same ids whatever else happened meanwhile. Notification faults follow the house
pattern: the profile's rules first (first match wins), then seeded rates keyed by the
order (:func:`simulator.domain.faults.draw`).

Example::

    wechat_date(datetime(2026, 1, 5, 23, 30, tzinfo=CST), time(0, 0))   # date(2026, 1, 5)
    fee_fen(75_000, Decimal("0.0060"))                                   # 450 (4.50 yuan)
    transaction_id(20260105, "1900000109", "TOPUP-1")                    # "4200...", 28 digits
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from simulator.clock import CST, parse_duration
from simulator.config import NotifyMatch, NotifySettings, WechatSettings
from simulator.domain.faults import draw

_NOON = time(12, 0)
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def wechat_date(moment: datetime, cutover: time) -> date:
    """The WeChat day (bill date) of ``moment``; the same rule as the bank's day cutover.

    A cutover at or after noon moves instants from the cutover on to the NEXT date; one
    before noon keeps instants before it on the PREVIOUS date; ``00:00`` is the calendar day.
    """
    local = moment.astimezone(CST)
    day, wall = local.date(), local.time()
    if cutover >= _NOON:
        return day + timedelta(days=1) if wall >= cutover else day
    return day - timedelta(days=1) if wall < cutover else day


def _t_plus_one(bill_date: date, at: time) -> datetime:
    return datetime.combine(bill_date + timedelta(days=1), at, tzinfo=CST)


def bill_ready_at(bill_date: date, settings: WechatSettings) -> datetime:
    """When the bill of ``bill_date`` becomes available: T+1 at ``bill_ready_at``."""
    return _t_plus_one(bill_date, settings.bill_ready_at)


def settle_at(bill_date: date, settings: WechatSettings) -> datetime:
    """When the day's T+1 settlement is posted: T+1 at ``settle_at``."""
    return _t_plus_one(bill_date, settings.settle_at)


def fee_fen(total_fen: int, rate: Decimal) -> int:
    """The fee of one order: ``total * rate`` rounded half-up to the fen."""
    return int((Decimal(total_fen) * rate).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def rate_text(rate: Decimal) -> str:
    """``Decimal("0.0060")`` -> ``"0.60%"`` (the bill's 费率 column)."""
    return f"{(rate * 100).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)}%"


def fen_to_fee(fen: int) -> Decimal:
    """A fee in fen as the bill's yuan Decimal (``60`` -> ``Decimal("0.60")``)."""
    return Decimal(fen) / 100


def _digest(*parts: object, size: int = 16) -> bytes:
    key = "|".join(str(p) for p in parts).encode("utf-8")
    return hashlib.blake2b(key, digest_size=size).digest()


def _digits(count: int, *parts: object) -> str:
    value = int.from_bytes(_digest(*parts, size=32), "big") % 10**count
    return f"{value:0{count}d}"


def _alnum(count: int, *parts: object) -> str:
    value = int.from_bytes(_digest(*parts, size=32), "big")
    out = []
    for _ in range(count):
        value, index = divmod(value, len(_ALNUM))
        out.append(_ALNUM[index])
    return "".join(out)


def transaction_id(seed: int, mchid: str, out_trade_no: str) -> str:
    """微信订单号: 28 digits starting 4200, like real ones."""
    return "4200" + _digits(24, seed, "transaction", mchid, out_trade_no)


def default_openid(seed: int, mchid: str, out_trade_no: str) -> str:
    """The payer's openid when the control API names none: 28 characters starting oUpF8."""
    text = base64.urlsafe_b64encode(_digest(seed, "openid", mchid, out_trade_no, size=18))
    return "oUpF8" + text.decode("ascii")[:23]


def code_url(seed: int, mchid: str, out_trade_no: str) -> str:
    """The NATIVE order's QR-code URL."""
    return "weixin://wxpay/bizpayurl?pr=" + _alnum(10, seed, "code_url", mchid, out_trade_no)


def refund_id(seed: int, mchid: str, out_refund_no: str) -> str:
    """微信退款单号: 29 digits starting 50."""
    return "50" + _digits(27, seed, "refund", mchid, out_refund_no)


def notification_id(seed: int, mchid: str, out_trade_no: str, copy_no: int) -> str:
    return str(uuid.UUID(bytes=_digest(seed, "notification", mchid, out_trade_no, copy_no)))


def resource_nonce(seed: int, notification: str) -> str:
    """The 12-character AES-GCM nonce of one notification's resource."""
    return _alnum(12, seed, "resource-nonce", notification)


def header_nonce(seed: int, notification: str, attempt: int) -> str:
    """``Wechatpay-Nonce`` of one delivery attempt."""
    return _alnum(32, seed, "header-nonce", notification, attempt)


# -- notification faults --------------------------------------------------------------------


@dataclass(frozen=True)
class NotifyPlan:
    """How the payment notification of one order goes out."""

    drop: bool = False
    copies: int = 1
    delay: timedelta = timedelta(0)
    ignore_answer: bool = False
    by: str | None = None  # the rule or rate that decided, for the control API

    def describe(self) -> str | None:
        if self.by is None:
            return None
        what = [name for name, on in (("drop", self.drop), ("duplicate", self.copies > 1),
                                      ("ignore_answer", self.ignore_answer)) if on]
        if self.delay:
            what.append(f"delay {self.delay}")
        return f"{', '.join(what) or 'none'} ({self.by})"


def _matches(m: NotifyMatch, out_trade_no: str, total_fen: int) -> bool:
    return ((m.out_trade_no is None or re.fullmatch(m.out_trade_no, out_trade_no) is not None)
            and (m.amount_min is None or total_fen >= m.amount_min)
            and (m.amount_max is None or total_fen <= m.amount_max))


def decide_notify(settings: NotifySettings, seed: int, mchid: str, out_trade_no: str,
                  total_fen: int) -> NotifyPlan:
    """The notification plan of a paid order: rules (first match wins), then seeded rates."""
    for index, rule in enumerate(settings.rules):
        if _matches(rule.match, out_trade_no, total_fen):
            a = rule.action
            return NotifyPlan(drop=a.drop, copies=2 if a.duplicate else 1,
                              delay=parse_duration(a.delay) if a.delay else timedelta(0),
                              ignore_answer=a.ignore_answer, by=rule.name or f"rule {index}")
    rates = settings.rates
    key = (mchid, out_trade_no)
    if rates.drop and draw(seed, "wechat-drop", *key) < rates.drop:
        return NotifyPlan(drop=True, by="rate drop")
    if rates.duplicate and draw(seed, "wechat-duplicate", *key) < rates.duplicate:
        return NotifyPlan(copies=2, by="rate duplicate")
    if rates.delay and draw(seed, "wechat-delay", *key) < rates.delay:
        return NotifyPlan(delay=parse_duration(rates.delay_by), by="rate delay")
    if rates.ignore_answer and draw(seed, "wechat-ignore", *key) < rates.ignore_answer:
        return NotifyPlan(ignore_answer=True, by="rate ignore_answer")
    return NotifyPlan()


def retry_delay(settings: NotifySettings, failed_attempt: int) -> timedelta | None:
    """Wait after attempt ``failed_attempt`` (1-based) failed; None when the schedule is over."""
    if failed_attempt < 1 or failed_attempt > len(settings.retry_schedule):
        return None
    return parse_duration(settings.retry_schedule[failed_attempt - 1])
