"""T+1 reconciliation of one bill date, and the operator's approval of it.

:func:`reconcile` downloads WeChat's ALL bill for the date, checks it (SHA-1, structure, the
summary against its rows: a wrong bill fails the run clearly and credits nothing), matches
it with the platform's orders (:mod:`platform_client.reconcile`) and resolves dropped
orders: the order is queried on the channel and, when it is SUCCESS with the same amount,
credited now (the notification never came). Everything else is recorded and held for
review. The run can be repeated for the same date: it gives the same items and never
credits twice. :func:`approve` records who approved the date and when; disbursement
needs it.

Example::

    run = reconcile(ctx, "2026-01-05")     # {'state': 'DONE', 'matched': 3, 'differences': 1, ...}
    approve(ctx, "2026-01-05", by="ops.li")
"""

from __future__ import annotations

import hashlib
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from contracts.wechat_bill import BillFormatError, TradeBill, parse_bill, render_bill
from platform_client.clock import wechat_day
from platform_client.context import Context
from platform_client.errors import BillError, StepRefused, WeChatError
from platform_client.reconcile import BillRow, Item, PlatformOrder, match_bill
from platform_client.topups import credit_topup


def bill_rows(bill: TradeBill) -> list[BillRow]:
    return [BillRow(r.out_trade_no, r.transaction_id, r.trade_state, r.settlement_total_fen, r.refund_fen)
            for r in bill.rows]


def settlement_figures(bill: TradeBill) -> tuple[int, int, int]:
    """(gross, fees, refunds) in fen as the channel settles them: each order's fee to the fen, half up."""
    gross = sum(r.settlement_total_fen for r in bill.rows if r.trade_state == "SUCCESS")
    fees = sum(int((r.fee * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)) for r in bill.rows
               if r.trade_state == "SUCCESS")
    refunds = sum(r.refund_fen for r in bill.rows if r.trade_state != "SUCCESS")
    return gross, fees, refunds


def _platform_orders(ctx: Context) -> dict[str, PlatformOrder]:
    return {r["out_trade_no"]: PlatformOrder(r["out_trade_no"], r["amount"], r["credited_via"] is not None,
                                             r["bill_date"], r["transaction_id"],
                                             recovered=r["credited_via"] == "reconcile")
            for r in ctx.store.all("SELECT * FROM orders")}


def _fail(ctx: Context, bill_date: str, error: str) -> None:
    with ctx.store.transaction():
        ctx.store.execute(
            "INSERT INTO recon_runs(bill_date, state, ran_at, error) VALUES (?, 'FAILED', ?, ?) "
            "ON CONFLICT(bill_date) DO UPDATE SET state = CASE WHEN recon_runs.state = 'DONE' "
            "THEN 'DONE' ELSE 'FAILED' END, error = excluded.error, ran_at = excluded.ran_at",
            (bill_date, ctx.now_iso(), error))
        ctx.alert("reconciliation_failed", f"{bill_date}:{error[:80]}",
                  f"reconciliation {bill_date}: {error}")


def _resolve_dropped(ctx: Context, item: Item) -> tuple[str, str, dict[str, Any] | None]:
    """(status, resolution, order as queried) for a dropped order."""
    try:
        order = ctx.wechat.query_order(item.out_trade_no)
    except WeChatError as exc:
        return "HELD", f"order query failed ({exc.wechat_code}): re-run reconciliation", None
    state, total = order.get("trade_state"), order.get("amount", {}).get("total")
    if state == "SUCCESS" and total == item.bill_amount:
        return "RESOLVED", (f"notification never received; order query SUCCESS "
                            f"{order.get('transaction_id')}; credited on reconciliation"), order
    return "HELD", f"bill says SUCCESS but the order query says {state} {total}: review", None


def _download_bill(ctx: Context, bill_date: str) -> bytes:
    """The ALL bill of ``bill_date``; a past day without trades is an empty bill.

    WeChat answers NO_STATEMENT_EXIST for a day without trades: that day still has to be
    reconciled (an order the platform credited is then platform-only). For today or a
    later day the answer means "not yet", and the run fails.
    """
    try:
        return ctx.wechat.trade_bill(bill_date, "ALL")
    except WeChatError as exc:
        today = wechat_day(ctx.now(), ctx.config.wechat_cutover).isoformat()
        if exc.wechat_code == "NO_STATEMENT_EXIST" and bill_date < today:
            return render_bill([])
        raise


def reconcile(ctx: Context, bill_date: str) -> dict[str, Any]:
    """Run (or re-run) the reconciliation of ``bill_date``; the run's figures."""
    try:
        data = _download_bill(ctx, bill_date)
        bill = parse_bill(data)
    except (WeChatError, BillError) as exc:
        _fail(ctx, bill_date, str(exc))
        raise BillError(f"reconciliation {bill_date} failed: {exc}") from None
    except BillFormatError as exc:
        _fail(ctx, bill_date, f"bill rejected: {exc}")
        raise BillError(f"reconciliation {bill_date} failed, nothing credited: "
                        f"the bill is wrong: {exc}") from None
    items = match_bill(bill_date, bill_rows(bill), _platform_orders(ctx))
    # Network first (queries of dropped orders), then one transaction for every change.
    orders = _platform_orders(ctx)
    resolved = {i.out_trade_no: _resolve_dropped(ctx, i) for i in items
                if i.kind == "DROPPED" and not orders[i.out_trade_no].credited}
    gross, fees, refunds = settlement_figures(bill)
    with ctx.store.transaction():
        for item in items:
            status, resolution = "OK", ""
            if item.kind == "DROPPED" and item.out_trade_no not in resolved:
                status, resolution = "RESOLVED", "credited by an earlier reconciliation run"
            elif item.kind == "DROPPED":
                status, resolution, order = resolved[item.out_trade_no]
                if order is not None:
                    outcome = credit_topup(ctx, out_trade_no=item.out_trade_no,
                                           transaction_id=str(order["transaction_id"]),
                                           amount=int(order["amount"]["total"]),
                                           success_time=str(order["success_time"]), via="reconcile")
                    if outcome not in ("credited", "duplicate"):
                        status, resolution = "HELD", f"could not credit: {outcome}"
            elif item.kind == "MATCHED":
                # An order held as platform-only on another date turned up in this bill.
                ctx.store.execute(
                    "UPDATE recon_items SET status = 'RESOLVED', resolution = ? WHERE out_trade_no = ? "
                    "AND kind = 'PLATFORM_ONLY' AND bill_date <> ?",
                    (f"found in the bill of {bill_date} (day cutover)", item.out_trade_no, bill_date))
            else:
                status = "HELD"
                resolution = {"AMOUNT_MISMATCH": "amounts differ: review before any disbursement",
                              "UNKNOWN_ORDER": "the platform never created this order: review",
                              "PLATFORM_ONLY": "credited by the platform, absent from the bill: held",
                              "CHANNEL_REFUND": "refund made on the channel: review"}[item.kind]
            existing = ctx.store.one(
                "SELECT status FROM recon_items WHERE bill_date = ? AND out_trade_no = ? AND kind = ?",
                (bill_date, item.out_trade_no, item.kind))
            if existing is not None and existing["status"] == "RESOLVED":
                continue  # a resolution already recorded stays as it is
            ctx.store.execute(
                "INSERT INTO recon_items(bill_date, out_trade_no, kind, bill_amount, platform_amount, "
                "transaction_id, status, resolution) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(bill_date, out_trade_no, kind) DO UPDATE SET status = excluded.status, "
                "resolution = excluded.resolution, bill_amount = excluded.bill_amount, "
                "platform_amount = excluded.platform_amount",
                (bill_date, item.out_trade_no, item.kind, item.bill_amount, item.platform_amount,
                 item.transaction_id, status, resolution))
        matched = sum(1 for i in items if i.kind == "MATCHED")
        ctx.store.execute(
            "INSERT INTO recon_runs(bill_date, state, ran_at, bill_sha1, rows, matched, differences, "
            "bill_gross, bill_fees, bill_refunds) VALUES (?, 'DONE', ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(bill_date) DO UPDATE SET state = 'DONE', ran_at = excluded.ran_at, "
            "bill_sha1 = excluded.bill_sha1, rows = excluded.rows, matched = excluded.matched, "
            "differences = excluded.differences, bill_gross = excluded.bill_gross, "
            "bill_fees = excluded.bill_fees, bill_refunds = excluded.bill_refunds, error = NULL",
            (bill_date, ctx.now_iso(), hashlib.sha1(data).hexdigest(), len(bill.rows), matched,
             len(items) - matched, gross, fees, refunds))
    return run_view(ctx, bill_date)


def run_view(ctx: Context, bill_date: str) -> dict[str, Any]:
    row = ctx.store.one("SELECT * FROM recon_runs WHERE bill_date = ?", (bill_date,))
    if row is None:
        raise StepRefused(f"no reconciliation for {bill_date}")
    view = dict(row)
    view["items"] = [dict(r) for r in ctx.store.all(
        "SELECT * FROM recon_items WHERE bill_date = ? ORDER BY out_trade_no, kind", (bill_date,))]
    return view


def approve(ctx: Context, bill_date: str, by: str) -> dict[str, Any]:
    """Record the operator's approval of a completed reconciliation (first approval stands)."""
    if not by.strip():
        raise StepRefused("an approval needs the approver's name (--by)")
    with ctx.store.transaction():
        run = ctx.store.one("SELECT state, approved_by FROM recon_runs WHERE bill_date = ?", (bill_date,))
        if run is None or run["state"] != "DONE":
            raise StepRefused(f"reconciliation for {bill_date} has not completed: nothing to approve")
        if run["approved_by"] is None:
            ctx.store.execute("UPDATE recon_runs SET approved_by = ?, approved_at = ? WHERE bill_date = ?",
                              (by.strip(), ctx.now_iso(), bill_date))
    return run_view(ctx, bill_date)
