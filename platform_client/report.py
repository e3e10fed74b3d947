"""A readable per-day report: reconciliation, batches, failures, alerts, balance check.

``report(ctx, "2026-01-05")`` covers the top-ups and consumption of that day and every batch
built for it (re-submissions included), and the alerts raised from that day on.

Example::

    print(render_report(ctx, "2026-01-05", with_bank=True))
"""

from __future__ import annotations

from typing import Any

from contracts.money import format_fen
from platform_client.checks import check_balances
from platform_client.context import Context
from platform_client.payouts import code_text, original_progress


def _yuan(fen: int | None) -> str:
    return "-" if fen is None else format_fen(int(fen))


def _recon_lines(ctx: Context, day: str) -> list[str]:
    run = ctx.store.one("SELECT * FROM recon_runs WHERE bill_date = ?", (day,))
    if run is None:
        return ["  not run"]
    lines = [f"  state {run['state']}, ran {run['ran_at']}, bill rows {run['rows']}, "
             f"matched {run['matched']}, differences {run['differences']}"]
    if run["error"]:
        lines.append(f"  error: {run['error']}")
    if run["bill_gross"] is not None:
        lines.append(f"  bill: gross {_yuan(run['bill_gross'])}, fees {_yuan(run['bill_fees'])}, "
                     f"refunds {_yuan(run['bill_refunds'])}, settlement expected "
                     f"{_yuan(run['bill_gross'] - run['bill_fees'] - run['bill_refunds'])}")
    approved = f"{run['approved_by']} at {run['approved_at']}" if run["approved_by"] else "no"
    lines.append(f"  approved: {approved}")
    for item in ctx.store.all("SELECT * FROM recon_items WHERE bill_date = ? AND kind <> 'MATCHED' "
                              "ORDER BY out_trade_no, kind", (day,)):
        lines.append(f"  - {item['kind']:<15} {item['out_trade_no']}: bill {_yuan(item['bill_amount'])}, "
                     f"platform {_yuan(item['platform_amount'])}, {item['status']}: {item['resolution']}")
    return lines


def _batch_lines(ctx: Context, day: str) -> tuple[list[str], list[str]]:
    lines: list[str] = []
    failures: list[str] = []
    batches = ctx.store.all("SELECT * FROM batches WHERE for_date = ? ORDER BY batch_no", (day,))
    if not batches:
        lines.append("  none")
    for b in batches:
        stats = ctx.store.one(
            "SELECT sum(state = 'SUCCESS') AS ok, "
            "coalesce(sum(CASE WHEN state = 'SUCCESS' THEN amount END), 0) AS ok_amount, "
            "sum(state IN ('FAILED', 'REJECTED')) AS bad, coalesce(sum(CASE WHEN state IN "
            "('FAILED', 'REJECTED') THEN amount END), 0) AS bad_amount, sum(state = 'WAITING') AS waiting "
            "FROM batch_records WHERE batch_no = ?", (b["batch_no"],))
        assert stats is not None
        lines.append(f"  {b['kind']} batch {b['batch_no']} {b['file_name']}: {b['state']}, "
                     f"{b['record_count']} records {_yuan(b['total'])}; success {stats['ok'] or 0} "
                     f"{_yuan(stats['ok_amount'])}, failed {stats['bad'] or 0} {_yuan(stats['bad_amount'])}, "
                     f"waiting {stats['waiting'] or 0}")
        if b["state"] == "REJECTED":
            lines.append(f"    rejected: {code_text(b['reject_code'])}: {b['reject_reason']}")
        if b["upload_error"]:
            lines.append(f"    upload failed, will retry: {b['upload_error']}")
        progress = original_progress(ctx, b["batch_no"])
        if progress["records"]:
            lines.append(f"    originals: {progress['succeeded']}/{progress['records']} succeeded "
                         f"(across re-submissions), {progress['outstanding']} outstanding")
        for r in ctx.store.all("SELECT * FROM batch_records WHERE batch_no = ? AND (state IN "
                               "('FAILED', 'REJECTED', 'DOUBLE_SUCCESS') OR flag IS NOT NULL) ORDER BY seq",
                               (b["batch_no"],)):
            reason = f" - {r['reason']}" if r["reason"] else ""
            flag = f" [{r['flag']}]" if r["flag"] else ""
            failures.append(f"  {r['serial']} ({r['kind']} {r['source_ref']}, user {r['user_id']}, "
                            f"{_yuan(r['amount'])}): {r['state']} {code_text(r['code'])}{reason}{flag}"
                            f"{' -> re-sent' if r['resent'] else ''}")
    return lines, failures


def report_data(ctx: Context, day: str, *, with_bank: bool = False) -> dict[str, Any]:
    batch_lines, failures = _batch_lines(ctx, day)
    alerts = [f"  {a['at']} {a['kind']}: {a['message']}" for a in ctx.store.all(
        "SELECT * FROM alerts WHERE at >= ? ORDER BY alert_id", (day,))]
    rejected = [f"  {n['received_at']} {n['outcome']} (HTTP {n['http_status']}) "
                f"order {n['out_trade_no'] or '-'} {n['detail']}" for n in ctx.store.all(
                    "SELECT * FROM notifications WHERE http_status <> 200 AND received_at >= ? ORDER BY id",
                    (day,))]
    return {"reconciliation": _recon_lines(ctx, day), "batches": batch_lines, "failures": failures,
            "alerts": alerts, "notifications": rejected, "balances": check_balances(ctx, with_bank=with_bank)}


def render_report(ctx: Context, day: str, *, with_bank: bool = False, per_user: bool = True) -> str:
    """The day's report; ``per_user=False`` sums the users up in one line (large populations)."""
    data = report_data(ctx, day, with_bank=with_bank)
    out = [f"Platform report for {day} (made {ctx.now_iso()})", "", "Reconciliation (WeChat bill vs orders)"]
    out += data["reconciliation"]
    out += ["", "Batches"] + data["batches"]
    out += ["", "Failures"] + (data["failures"] or ["  none"])
    out += ["", "Refused notifications"] + (data["notifications"] or ["  none"])
    out += ["", "Alerts"] + (data["alerts"] or ["  none"])
    bal = data["balances"]
    out += ["", f"Balance check: {'OK' if bal['ok'] else 'DIFFERENCES'}"]
    out += [f"  - {d}" for d in bal["differences"]]
    if not per_user:
        users = bal["users"]
        platform = sum(u["in_transit"] + u["cash_available"] + u["cash_frozen"] for u in users)
        bank = sum(u["bank_balance"] or 0 for u in users)
        out.append(f"  {len(users)} users: platform {_yuan(platform)} (in transit "
                   f"{_yuan(sum(u['in_transit'] for u in users))}), bank Class III total {_yuan(bank)}")
    for u in bal["users"] if per_user else []:
        out.append(f"  {u['user_id']}: in transit {_yuan(u['in_transit'])}, cash {_yuan(u['cash_available'])}"
                   f" (+{_yuan(u['cash_frozen'])} frozen), bank {_yuan(u['bank_balance'])}")
    sup = bal["supervision"]
    out.append(f"  98 account {sup['account_no']}: settlements expected "
               f"{_yuan(sup['settlements_expected'])}, disbursed {_yuan(sup['disbursed'])}, "
               f"bank {_yuan(sup['bank_balance'])}"
               f"{' (' + sup['note'] + ')' if sup.get('note') else ''}")
    return "\n".join(out) + "\n"
