"""Top-ups: WeChat orders, payment notifications, and crediting the wallet exactly once.

A top-up is credited (``topup``: +in_transit) when its notification arrives or, for a
dropped notification, when reconciliation finds it in the bill and the order query says
SUCCESS. Both paths go through :func:`credit_topup`, which is idempotent by out_trade_no:
a duplicated notification, a late one after reconciliation, or a re-run never credits twice.

Example::

    create_order(ctx, "u1", "TOPUP-u1-1", 10000)        # the code_url the user scans
    status, body = handle_notification(ctx, headers, raw_body)   # 200 / 4xx, recorded
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from contracts.wechat_signing import (
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    ResourceDecryptError,
    decrypt_resource,
)
from platform_client import wallet
from platform_client.clock import CST, wechat_day
from platform_client.context import Context
from platform_client.errors import StepRefused


def create_order(ctx: Context, user_id: str, out_trade_no: str, amount: int,
                 description: str = "余额充值") -> str:
    """Record the order, then create it on the channel; its ``code_url``."""
    if amount <= 0:
        raise StepRefused("a top-up needs a positive amount")
    with ctx.store.transaction():
        if ctx.store.one("SELECT 1 FROM users WHERE user_id = ?", (user_id,)) is None:
            raise StepRefused(f"no user {user_id}")
        row = ctx.store.one("SELECT user_id, amount FROM orders WHERE out_trade_no = ?", (out_trade_no,))
        if row is not None and (row["user_id"], row["amount"]) != (user_id, amount):
            raise StepRefused(f"order {out_trade_no} exists for another user or amount")
        if row is None:
            ctx.store.execute("INSERT INTO orders(out_trade_no, user_id, amount, created_at) "
                              "VALUES (?, ?, ?, ?)", (out_trade_no, user_id, amount, ctx.now_iso()))
    # Recorded first: an order the channel knows is never unknown to the platform.
    code_url = ctx.wechat.create_native_order(out_trade_no, amount, description,
                                              ctx.config.notify_endpoint, attach=user_id)
    with ctx.store.transaction():
        ctx.store.execute("UPDATE orders SET code_url = ? WHERE out_trade_no = ?", (code_url, out_trade_no))
    return code_url


def credit_topup(ctx: Context, *, out_trade_no: str, transaction_id: str, amount: int,
                 success_time: str, via: str, at: str | None = None) -> str:
    """Credit a paid order once (call inside a transaction): 'credited', 'duplicate' or a refusal.

    Refusals (nothing credited): 'unknown_order', 'amount_mismatch'. ``at`` is the step's
    clock reading (None: read the clock now).
    """
    order = ctx.store.one("SELECT * FROM orders WHERE out_trade_no = ?", (out_trade_no,))
    if order is None:
        return "unknown_order"
    if order["amount"] != amount:
        return "amount_mismatch"
    if order["credited_via"] is not None:
        return "duplicate"
    paid_at = datetime.fromisoformat(success_time)
    now = at or ctx.now_iso()
    ctx.store.execute(
        "UPDATE orders SET state = 'PAID', transaction_id = ?, success_time = ?, bill_date = ?, "
        "credited_via = ?, credited_at = ? WHERE out_trade_no = ?",
        (transaction_id, success_time, wechat_day(paid_at, ctx.config.wechat_cutover).isoformat(),
         via, now, out_trade_no))
    wallet.post(ctx.store, user_id=order["user_id"], kind="topup", ref=out_trade_no, amount=amount,
                at=now, memo=f"WeChat {transaction_id} via {via}")
    return "credited"


def _record(ctx: Context, at: str, outcome: str, status: int, detail: str, *,
            notification_id: str | None = None, out_trade_no: str | None = None,
            transaction_id: str | None = None) -> None:
    ctx.store.execute(
        "INSERT INTO notifications(received_at, notification_id, out_trade_no, transaction_id, "
        "outcome, http_status, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (at, notification_id, out_trade_no, transaction_id, outcome, status, detail))


def _fail(message: str) -> dict[str, Any]:
    return {"code": "FAIL", "message": message}


def stamped_at(ctx: Context, headers: Mapping[str, str]) -> str | None:
    """On the bank's clock (``clock: bank``), the time the channel stamped on a notification.

    The simulated channel sends the standard HTTP ``Date`` header from the same virtual
    clock the platform follows, so its value IS a reading of that clock, without a round
    trip to ask for one. None with the system clock (the platform's own clock rules) or
    without a usable ``Date``.

    >>> from platform_client.clock import FixedClock
    >>> from platform_client.config import ClientConfig
    >>> ctx = Context.create(ClientConfig(clock="bank", store_path=":memory:"),
    ...                      clock=FixedClock(datetime(2026, 1, 5, tzinfo=CST)))
    >>> stamped_at(ctx, {"date": "Mon, 05 Jan 2026 04:30:00 GMT"})
    '2026-01-05T12:30:00+08:00'
    """
    if ctx.config.clock != "bank":
        return None
    text = next((v for k, v in headers.items() if k.lower() == "date"), None)
    if not text:
        return None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(CST).isoformat(timespec="seconds")


def handle_notification(ctx: Context, headers: Mapping[str, str], body: bytes, *,
                        at: str | None = None) -> tuple[int, dict[str, Any]]:
    """Verify, decrypt and apply one payment notification; (HTTP status, JSON answer).

    Every notification is recorded with its outcome, accepted or not. ``at`` is when it was
    received (None: :func:`stamped_at`, else read the clock now); the clock is read before
    the store is locked, since a clock may be a round trip away (the bank's virtual clock).
    """
    h = {k.lower(): v for k, v in headers.items()}
    now = at or stamped_at(ctx, h) or ctx.now_iso()
    timestamp = h.get(HEADER_TIMESTAMP.lower(), "")
    nonce = h.get(HEADER_NONCE.lower(), "")
    signature = h.get(HEADER_SIGNATURE.lower(), "")
    # Verified before the store is locked: an unknown certificate serial is a round trip.
    signed = bool(timestamp and nonce and signature) and ctx.wechat.verify_notification(h, body)
    with ctx.store.transaction():
        if not signed:
            _record(ctx, now, "bad_signature", 401, "signature missing or wrong")
            return 401, _fail("signature verification failed")
        try:
            envelope = json.loads(body)
            res = envelope["resource"]
            plain = decrypt_resource(ctx.config.wechat_api_v3_key, res["ciphertext"],
                                     res.get("associated_data", ""), res["nonce"])
            tx = json.loads(plain)
            out_trade_no = str(tx["out_trade_no"])
            transaction_id = str(tx["transaction_id"])
            amount = int(tx["amount"]["total"])
            state = str(tx["trade_state"])
            success_time = str(tx["success_time"])
        except (ValueError, KeyError, TypeError, ResourceDecryptError) as exc:
            _record(ctx, now, "malformed", 400, f"{type(exc).__name__}: {exc}")
            return 400, _fail("malformed notification")
        nid = str(envelope.get("id", ""))
        if state != "SUCCESS":
            _record(ctx, now, "not_success", 400, f"trade_state {state}", notification_id=nid,
                    out_trade_no=out_trade_no, transaction_id=transaction_id)
            return 400, _fail(f"trade_state {state} is not SUCCESS")
        outcome = credit_topup(ctx, out_trade_no=out_trade_no, transaction_id=transaction_id,
                               amount=amount, success_time=success_time, via="notify", at=now)
        status = {"credited": 200, "duplicate": 200, "unknown_order": 404, "amount_mismatch": 400}[outcome]
        _record(ctx, now, outcome, status, "" if status == 200 else f"amount {amount}",
                notification_id=nid, out_trade_no=out_trade_no, transaction_id=transaction_id)
        if status != 200:
            return status, _fail(outcome.replace("_", " "))
        return 200, {"code": "SUCCESS", "message": "成功"}


def handle_notifications(ctx: Context, batch: Sequence[tuple[Mapping[str, str], bytes]]
                         ) -> list[tuple[int, dict[str, Any]]]:
    """Apply several notifications received together in ONE store transaction; their answers.

    Each notification is still all-or-nothing (a savepoint of its own) and recorded as in
    :func:`handle_notification`, with one clock reading for the batch. One commit for the
    batch instead of one each: the pages every credit touches (orders, wallets, journal,
    notifications) are written once. No answer may leave before this returns, i.e. before
    the commit: a crash before it loses only notifications not yet answered, which the
    channel sends again. An unexpected failure of one notification answers 500 for it alone.

    Example::

        answers = handle_notifications(ctx, [(headers1, body1), (headers2, body2)])
    """
    if not batch:
        return []
    stamps = [stamped_at(ctx, headers) for headers, _ in batch]
    now = ctx.now_iso() if None in stamps else ""
    answers: list[tuple[int, dict[str, Any]]] = []
    with ctx.store.transaction():
        for (headers, body), stamp in zip(batch, stamps, strict=True):
            try:
                answers.append(handle_notification(ctx, headers, body, at=stamp or now))
            except Exception as exc:  # rolled back to its savepoint; the others stand
                answers.append((500, _fail(f"not applied: {type(exc).__name__}")))
    return answers
