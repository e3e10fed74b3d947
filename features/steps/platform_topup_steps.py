"""Platform steps: users enrolled by the platform, WeChat top-ups and payment notifications.

The platform registers the user's five elements and opens the Class III account through
the signed bank API; a top-up is a WeChat order the platform creates, the user pays
through the control API (as the WeChat app would), and the channel notifies the
platform's endpoint. Balances are the platform's wallet: ``in transit`` until the bank
confirms the disbursement, then ``cash``.
"""

from __future__ import annotations

import json
import secrets
import time

import httpx
from pytest_bdd import given, then, when

from contracts.money import format_fen
from contracts.wechat_dev_keys import merchant_private_key
from contracts.wechat_signing import (
    HEADER_NONCE,
    HEADER_SERIAL,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    encrypt_resource,
    sign_answer,
)
from features.steps.platform_world import PlatformWorld, platform_phrase
from features.steps.types import Moment
from platform_client import wallet
from platform_client.onboarding import upload_images

# -- Given: platform users ------------------------------------------------------------------------


@given(platform_phrase("{name:Person} is a platform user with an active Class III account"))
@given(platform_phrase("{name:Person}是平台用户，三类账户已开立且状态正常"))
def platform_user(platform_world: PlatformWorld, name: str) -> None:
    """Registered and opened by the platform; the bank approved the ID-card images."""
    platform_world.enrol(name, approved=True)


@given(platform_phrase("{name:Person} is a platform user whose ID-card images were never sent"))
@given(platform_phrase("{name:Person}是平台用户，三类账户已开立但未上传身份证影像"))
def platform_user_without_images(platform_world: PlatformWorld, name: str) -> None:
    """The account waits in PENDING_IMAGES: a disbursement to it fails 3061."""
    platform_world.enrol(name, approved=False)


# -- When: top-ups ----------------------------------------------------------------------------------


@given(platform_phrase("{name:Person} tops up {amount:Money} by WeChat Pay"))
@when(platform_phrase("{name:Person} tops up {amount:Money} by WeChat Pay"))
@given(platform_phrase("{name:Person}通过微信支付充值{amount:Money}元"))
@when(platform_phrase("{name:Person}通过微信支付充值{amount:Money}元"))
def tops_up(platform_world: PlatformWorld, name: str, amount: int) -> None:
    """Order created by the platform, paid by the user; the notification is delivered now."""
    platform_world.top_up(name, amount)


@when(platform_phrase("{name:Person} tops up {amount:Money} by WeChat Pay and the notification is "
                      "{fault:NotifyFault}"))
@when(platform_phrase("{name:Person}通过微信支付充值{amount:Money}元，支付通知{fault:NotifyFault}"))
def tops_up_with_fault(platform_world: PlatformWorld, name: str, amount: int, fault: str) -> None:
    """WeChat's magic order suffixes of the default profile: -DROP, -DUP, -LATE."""
    platform_world.top_up(name, amount, fault)


@when(platform_phrase("{name:Person} tops up {amount:Money} by WeChat Pay at {at:Moment}"))
@when(platform_phrase("{name:Person}于{at:Moment}通过微信支付充值{amount:Money}元"))
def tops_up_at(platform_world: PlatformWorld, name: str, amount: int, at: Moment) -> None:
    """The bank clock (which WeChat shares) moves to ``at`` first: for the day cutover."""
    target = at.resolve(platform_world.scenario.business_date)
    platform_world.control.advance(to=target.isoformat(timespec="minutes"))
    platform_world.top_up(name, amount)


@when(platform_phrase("{name:Person} orders a top-up of {amount:Money} but never pays"))
@when(platform_phrase("{name:Person}下单充值{amount:Money}元但未支付"))
def orders_without_paying(platform_world: PlatformWorld, name: str, amount: int) -> None:
    platform_world.order(name, amount)


@given(platform_phrase("the platform recorded {name:Person}'s top-up as {recorded:Money} but WeChat "
                       "charged {charged:Money} for it"))
@when(platform_phrase("the platform recorded {name:Person}'s top-up as {recorded:Money} but WeChat "
                      "charged {charged:Money} for it"))
@given(platform_phrase("平台将{name:Person}的充值订单记为{recorded:Money}元，但微信支付实际收取了{charged:Money}元"))
@when(platform_phrase("平台将{name:Person}的充值订单记为{recorded:Money}元，但微信支付实际收取了{charged:Money}元"))
def mismatched_top_up(platform_world: PlatformWorld, name: str, recorded: int, charged: int) -> None:
    """A platform defect on purpose: the order recorded with one amount, created and paid with another.

    ``create_order`` cannot do this (it creates the channel order from the recorded one),
    so the step does its two halves itself: the platform's ``orders`` row with
    ``recorded``, then the channel order through WeChat's signed API with ``charged``.
    The user pays ``charged``; the notification that follows carries ``charged`` and the
    platform's endpoint refuses it (400, amount mismatch). Reconciliation is where the
    difference must surface.
    """
    assert recorded != charged, "a deliberate discrepancy needs two different amounts"
    world = platform_world
    ctx = world.ctx
    user_id = world.user_id(name)
    out_trade_no = world.next_order_no()
    with ctx.store.transaction():
        ctx.store.execute("INSERT INTO orders(out_trade_no, user_id, amount, created_at) VALUES (?, ?, ?, ?)",
                          (out_trade_no, user_id, recorded, ctx.now_iso()))
    code_url = ctx.wechat.create_native_order(out_trade_no, charged, "余额充值", ctx.config.notify_endpoint,
                                              attach=user_id)
    with ctx.store.transaction():
        ctx.store.execute("UPDATE orders SET code_url = ? WHERE out_trade_no = ?", (code_url, out_trade_no))
    world.orders.setdefault(name, []).append(out_trade_no)
    world.pay(out_trade_no)


@when(platform_phrase("a notification with a forged signature says {name:Person}'s order of "
                      "{amount:Money} was paid"))
@when(platform_phrase("平台收到一条伪造签名的通知，称{name:Person}{amount:Money}元的订单已支付"))
def forged_notification(platform_world: PlatformWorld, name: str, amount: int) -> None:
    """Someone who knows the order but not the merchant's key posts a SUCCESS to the endpoint.

    The resource is well formed and encrypted with the right key (as a leaked v3 key
    would allow); only the signature is made with the wrong key.
    """
    world = platform_world
    out_trade_no = world.order_of(name, amount)
    config = world.ctx.config
    paid = {"mchid": config.wechat_mchid, "appid": config.wechat_appid, "out_trade_no": out_trade_no,
            "transaction_id": "4200000000000000000000000001", "trade_type": "NATIVE",
            "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS",
            "success_time": world.ctx.now_iso(), "amount": {"total": amount, "currency": "CNY",
                                                            "payer_total": amount}}
    nonce = secrets.token_hex(6)
    body = json.dumps({"id": "forged-1", "event_type": "TRANSACTION.SUCCESS",
                       "resource_type": "encrypt-resource",
                       "resource": {"algorithm": "AEAD_AES_256_GCM", "associated_data": "transaction",
                                    "nonce": nonce, "original_type": "transaction",
                                    "ciphertext": encrypt_resource(
                                        config.wechat_api_v3_key, json.dumps(paid).encode(),
                                        "transaction", nonce)}}).encode()
    # Wall-clock seconds, as WeChat stamps its notifications (the signature's timestamp).
    timestamp, sig_nonce = str(int(time.time())), secrets.token_hex(16)
    # Signed with a key that is not WeChat's (the merchant's own) under WeChat's key id.
    headers = {HEADER_TIMESTAMP: timestamp, HEADER_NONCE: sig_nonce, "Content-Type": "application/json",
               HEADER_SERIAL: config.wechat_public_key_id or "5B1F0E7A2C3D4E5F60718293A4B5C6D7E8F90123",
               HEADER_SIGNATURE: sign_answer(merchant_private_key(), timestamp, sig_nonce, body)}
    answer = httpx.post(config.notify_endpoint, content=body, headers=headers, timeout=10.0)
    world.results["forged_answer"] = answer


@when(platform_phrase("the platform sends {name:Person}'s ID-card images"))
@when(platform_phrase("平台上传{name:Person}的身份证影像"))
def platform_sends_images(platform_world: PlatformWorld, name: str) -> None:
    """Over SFTP under the account's names; the bank reviews them after its review delay."""
    upload_images(platform_world.ctx, platform_world.user_id(name))


# -- Then: the platform's wallet and notifications ----------------------------------------------------


@then(platform_phrase("the platform holds {amount:Money} in transit for {name:Person}"))
@then(platform_phrase("平台为{name:Person}记录的在途余额为{amount:Money}元"))
def in_transit(platform_world: PlatformWorld, name: str, amount: int) -> None:
    """Credited by the platform, not yet in the user's Class III account."""
    got = wallet.balances(platform_world.ctx.store, platform_world.user_id(name))
    assert got.in_transit == amount, f"{name}: {got}, expected {format_fen(amount)} in transit"


@then(platform_phrase("{name:Person} has {amount:Money} of cash at the platform"))
@then(platform_phrase("{name:Person}在平台的可用现金余额为{amount:Money}元"))
def cash(platform_world: PlatformWorld, name: str, amount: int) -> None:
    """Cash: the bank confirmed the disbursement into the Class III account."""
    got = wallet.balances(platform_world.ctx.store, platform_world.user_id(name))
    assert got.cash_available == amount, f"{name}: {got}, expected {format_fen(amount)} cash"


@then(platform_phrase("the platform answered {count:d} notification for {name:Person}'s order of "
                      "{amount:Money} and credited it once"))
@then(platform_phrase("the platform answered {count:d} notifications for {name:Person}'s order of "
                      "{amount:Money} and credited it once"))
@then(platform_phrase("平台应答了{name:Person}{amount:Money}元订单的{count:d}次通知，只入账一次"))
def answered_and_credited_once(platform_world: PlatformWorld, count: int, name: str, amount: int) -> None:
    world = platform_world
    out_trade_no = world.order_of(name, amount)
    answers = world.ctx.store.all("SELECT outcome, http_status FROM notifications WHERE out_trade_no = ? "
                                  "ORDER BY id", (out_trade_no,))
    assert [a["http_status"] for a in answers] == [200] * count, [dict(a) for a in answers]
    assert [a["outcome"] for a in answers][:1] == ["credited"], [dict(a) for a in answers]
    credits = world.ctx.store.scalar("SELECT count(*) FROM journal WHERE kind = 'topup' AND ref = ?",
                                     (out_trade_no,))
    assert credits == 1, f"{out_trade_no} credited {credits} times"
    deliveries = world.control.call("GET", "/wechat/notifications", params={"out_trade_no": out_trade_no})
    sent = [n for n in deliveries if n.get("sent_at")]
    assert len(sent) >= count, sent  # the channel did send them all


@then(platform_phrase("the platform has received no notification for {name:Person}'s order of "
                      "{amount:Money}"))
@then(platform_phrase("平台未收到{name:Person}{amount:Money}元订单的支付通知"))
def no_notification(platform_world: PlatformWorld, name: str, amount: int) -> None:
    out_trade_no = platform_world.order_of(name, amount)
    count = platform_world.ctx.store.scalar("SELECT count(*) FROM notifications WHERE out_trade_no = ?",
                                            (out_trade_no,))
    assert count == 0, f"{count} notifications recorded for {out_trade_no}"


@then(platform_phrase("the platform refused WeChat's notifications for {name:Person}'s top-up of "
                      "{amount:Money} as an amount mismatch"))
@then(platform_phrase("平台以金额不符拒绝了{name:Person}{amount:Money}元充值订单的支付通知"))
def notifications_refused_amount(platform_world: PlatformWorld, name: str, amount: int) -> None:
    """Every delivery the channel sent was answered 400 and recorded as ``amount_mismatch``."""
    world = platform_world
    out_trade_no = world.order_of(name, amount)
    answers = [(r["outcome"], r["http_status"]) for r in world.ctx.store.all(
        "SELECT outcome, http_status FROM notifications WHERE out_trade_no = ? ORDER BY id", (out_trade_no,))]
    assert answers and set(answers) == {("amount_mismatch", 400)}, answers
    deliveries = world.control.call("GET", "/wechat/notifications", params={"out_trade_no": out_trade_no})
    sent = [n for n in deliveries if n.get("sent_at")]
    assert len(sent) >= len(answers), sent  # each recorded answer is one the channel sent


@then(platform_phrase("nothing was credited for {name:Person}'s top-up of {amount:Money}"))
@then(platform_phrase("平台未为{name:Person}{amount:Money}元的充值订单入账"))
def nothing_credited(platform_world: PlatformWorld, name: str, amount: int) -> None:
    """No wallet posting for the order, and the order is not marked credited by any path."""
    world = platform_world
    out_trade_no = world.order_of(name, amount)
    order = world.ctx.store.one("SELECT state, credited_via FROM orders WHERE out_trade_no = ?",
                                (out_trade_no,))
    assert order is not None and order["credited_via"] is None, dict(order or {})
    postings = world.ctx.store.all("SELECT kind, amount FROM journal WHERE ref = ?", (out_trade_no,))
    assert postings == [], [dict(p) for p in postings]


@then(platform_phrase("the platform refused the forged notification and recorded it"))
@then(platform_phrase("平台拒绝了伪造的通知并留有记录"))
def forged_refused(platform_world: PlatformWorld) -> None:
    """401 to the sender; a ``bad_signature`` row in the platform's notification log."""
    answer: httpx.Response = platform_world.results["forged_answer"]
    assert answer.status_code == 401, answer.text
    rows = platform_world.ctx.store.all("SELECT outcome, http_status FROM notifications")
    got = [(r["outcome"], r["http_status"]) for r in rows]
    assert got == [("bad_signature", 401)], got


@then(platform_phrase("WeChat says {name:Person}'s order of {amount:Money} is {state}"))
@then(platform_phrase("微信支付查询{name:Person}{amount:Money}元订单的状态为{state}"))
def order_state(platform_world: PlatformWorld, name: str, amount: int, state: str) -> None:
    """The channel's order query (trade_state: NOTPAY, SUCCESS, REFUND, CLOSED)."""
    order = platform_world.ctx.wechat.query_order(platform_world.order_of(name, amount))
    assert order["trade_state"] == state, order
