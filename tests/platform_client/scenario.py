"""Scenario helpers shared by the platform client's tests (no network of their own)."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import httpx

from contracts.wechat_dev_keys import PUBLIC_KEY_ID as DEV_PUBLIC_KEY_ID
from contracts.wechat_signing import PrivateKey, encrypt_resource, load_private_key, sign_answer
from platform_client.context import Context
from platform_client.reconciliation import approve
from platform_client.topups import handle_notification
from simulator.wechat.keys import DEV_DIR, PUB_KEY_FILE


def notification(ctx: Context, out_trade_no: str, amount: int, *, transaction_id: str | None = None,
                 success_time: str = "2026-01-04T10:00:00+08:00", state: str = "SUCCESS",
                 key: PrivateKey | None = None) -> tuple[dict[str, str], bytes]:
    """Headers and body of a payment notification as the channel sends it (v3 shape)."""
    resource = {"appid": ctx.config.wechat_appid, "mchid": ctx.config.wechat_mchid,
                "out_trade_no": out_trade_no, "transaction_id": transaction_id or f"4200{out_trade_no}",
                "trade_type": "NATIVE", "trade_state": state, "trade_state_desc": "支付成功",
                "success_time": success_time, "payer": {"openid": "oUpF8-test"},
                "amount": {"total": amount, "payer_total": amount, "currency": "CNY"}}
    nonce = "abcdefghijkl"
    body = json.dumps({
        "id": f"N-{out_trade_no}", "create_time": success_time, "event_type": "TRANSACTION.SUCCESS",
        "resource_type": "encrypt-resource", "summary": "支付成功",
        "resource": {"algorithm": "AEAD_AES_256_GCM", "associated_data": "transaction", "nonce": nonce,
                     "original_type": "transaction",
                     "ciphertext": encrypt_resource(ctx.config.wechat_api_v3_key,
                                                    json.dumps(resource).encode(), "transaction", nonce)},
    }, ensure_ascii=False).encode()
    ts, n = "1767578400", "notify-nonce-1"
    # Signed with the development WeChat Pay public key's private half (the channel's key).
    signer = key or load_private_key(DEV_DIR / PUB_KEY_FILE)
    headers = {"Wechatpay-Timestamp": ts, "Wechatpay-Nonce": n,
               "Wechatpay-Serial": ctx.config.wechat_public_key_id,
               "Wechatpay-Signature": sign_answer(signer, ts, n, body)}
    return headers, body


def signed_answer(status: int, *, json_body: Any = None, content: bytes = b"") -> httpx.Response:
    """An answer as the channel gives it: signed with the development WeChat Pay public key."""
    body = content if json_body is None else json.dumps(json_body).encode()
    ts, n = str(int(time.time())), secrets.token_hex(16)
    signer = load_private_key(DEV_DIR / PUB_KEY_FILE)
    headers = {"Content-Type": "application/json", "Wechatpay-Timestamp": ts, "Wechatpay-Nonce": n,
               "Wechatpay-Serial": DEV_PUBLIC_KEY_ID, "Wechatpay-Signature": sign_answer(signer, ts, n, body)}
    return httpx.Response(status, content=body, headers=headers)


def record_order(ctx: Context, user_id: str, out_trade_no: str, amount: int) -> None:
    """An order as create_order records it, without asking the channel."""
    with ctx.store.transaction():
        ctx.store.execute("INSERT INTO orders(out_trade_no, user_id, amount, created_at) VALUES (?, ?, ?, ?)",
                          (out_trade_no, user_id, amount, ctx.now_iso()))


def paid_and_reconciled(ctx: Context, day: str, topups: list[tuple[str, str, int]]) -> None:
    """Top-ups (user, out_trade_no, fen) notified, matched on ``day`` and approved.

    The notifications go through the platform's real handler; the reconciliation run is
    written as :func:`platform_client.reconciliation.reconcile` would write an all-matched bill.
    """
    for user_id, otn, fen in topups:
        record_order(ctx, user_id, otn, fen)
        headers, body = notification(ctx, otn, fen, success_time=f"{day}T10:00:00+08:00")
        assert handle_notification(ctx, headers, body)[0] == 200
    with ctx.store.transaction():
        ctx.store.execute("INSERT INTO recon_runs(bill_date, state, ran_at, rows, matched, bill_gross, "
                          "bill_fees, bill_refunds) VALUES (?, 'DONE', ?, ?, ?, ?, 0, 0)",
                          (day, ctx.now_iso(), len(topups), len(topups), sum(f for *_, f in topups)))
        for _, otn, fen in topups:
            ctx.store.execute("INSERT INTO recon_items(bill_date, out_trade_no, kind, bill_amount, "
                              "platform_amount, status) VALUES (?, ?, 'MATCHED', ?, ?, 'OK')",
                              (day, otn, fen, fen))
    approve(ctx, day, by="ops.test")


def records(ctx: Context, batch_no: int) -> list[dict[str, Any]]:
    return [dict(r) for r in ctx.store.all("SELECT * FROM batch_records WHERE batch_no = ? ORDER BY seq",
                                           (batch_no,))]
