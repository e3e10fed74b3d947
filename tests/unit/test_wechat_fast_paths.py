"""The WeChat channel's fast paths behave exactly like the plain ones.

Direct routes (order creation in ``WechatAuth``, payment in ``DirectPay``) must answer byte
for byte what FastAPI answers and leave the same timeline; one notification job per instant
must still send every delivery at its time; a drain sends everything due, however many; the
platform's batched notification handling must keep each notification all-or-nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from platform_client.clock import CST, FixedClock
from platform_client.config import ClientConfig
from platform_client.context import Context
from platform_client.onboarding import register_user
from platform_client.topups import handle_notification, handle_notifications
from simulator.bank import Bank
from simulator.clock import parse_datetime
from simulator.http import admin_routes
from simulator.http.app import create_app
from simulator.http.wechat_routes import WechatAuth
from simulator.testing.wechat_keys import dev_sign
from simulator.wechat import dispatcher as dispatcher_module
from simulator.wechat.dispatcher import Dispatcher
from simulator.wechat.notifications import JOB_KIND
from tests.conftest import make_profile
from tests.platform_client.bank import identity
from tests.platform_client.scenario import notification, record_order

MCHID, APPID = "1900000109", "wxd678efh567hg6787"
NATIVE = "/wechat/v3/pay/transactions/native"
NOTIFY_URL = "http://platform.test/wechat/notify"
Exchange = tuple[int, str | None, bytes]


def _order(out_trade_no: str, total: int = 10000, **changes: Any) -> bytes:
    body: dict[str, Any] = {"appid": APPID, "mchid": MCHID, "description": "余额充值",
                            "out_trade_no": out_trade_no, "notify_url": NOTIFY_URL,
                            "amount": {"total": total, "currency": "CNY"}}
    body.update(changes)
    return orjson.dumps(body)


# (method, path, body, content type): creations (new, repeat, conflict, refused by the
# schema, not JSON, not an object), then payments (defaults, a body, a repeat, unknown
# order, a body the model refuses, a query string, not JSON).
REQUESTS: list[tuple[str, str, bytes, str]] = [
    ("POST", NATIVE, _order("TOPUP-0001"), "application/json"),
    ("POST", NATIVE, _order("TOPUP-0001"), "application/json"),
    ("POST", NATIVE, _order("TOPUP-0001", total=10001), "application/json"),
    ("POST", NATIVE, _order("TOPUP-0002", total=0), "application/json"),
    ("POST", NATIVE, _order("TOPUP-0003", appid="wx-other"), "application/json; charset=utf-8"),
    ("POST", NATIVE, _order("TOPUP-0004"), "text/plain"),
    ("POST", NATIVE, b"[1]", "application/json"),
    ("POST", NATIVE, _order("TOPUP-0005", attach="u=5"), "application/json"),
    ("POST", "/_admin/wechat/orders/TOPUP-0001/pay", b"", "application/json"),
    ("POST", "/_admin/wechat/orders/TOPUP-0005/pay", b'{"openid": "oUpF8-given"}',
     "application/json"),
    ("POST", "/_admin/wechat/orders/TOPUP-0005/pay", b"{}", "application/json"),
    ("POST", "/_admin/wechat/orders/TOPUP-9999/pay", b"{}", "application/json"),
    ("POST", "/_admin/wechat/orders/TOPUP-0001/pay", b'{"bank_type": "bad type"}',
     "application/json"),
    ("POST", "/_admin/wechat/orders/TOPUP-0001/pay?mchid=1900000109", b"{}", "application/json"),
    ("POST", "/_admin/wechat/orders/TOPUP-0001/pay", b"{}", "text/plain"),
]


def _exchange_all(bank: Bank) -> list[Exchange]:
    async def run() -> list[Exchange]:
        transport = httpx.ASGITransport(app=create_app(bank))
        out: list[Exchange] = []
        async with httpx.AsyncClient(transport=transport, base_url="http://bank") as client:
            for method, path, body, content_type in REQUESTS:
                headers = {"Content-Type": content_type}
                if path.startswith("/wechat/"):
                    headers["Authorization"] = dev_sign(method, path, body)
                answer = await client.request(method, path, content=body, headers=headers)
                out.append((answer.status_code, answer.headers.get("content-type"), answer.content))
        return out

    return asyncio.run(run())


def _timeline(bank: Bank) -> list[tuple[str, str | None, str | None, dict[str, Any]]]:
    return [(e["kind"], e["app_id"], e["ref"], e["detail"]) for e in bank.events(limit=10_000)
            if e["kind"] != "request"]


def test_direct_routes_answer_byte_for_byte_like_the_framework(
        monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[bool] = []
    direct = WechatAuth._direct

    async def spy(self: WechatAuth, *args: Any) -> bool:
        taken.append(await direct(self, *args))
        return taken[-1]

    pay_options = admin_routes._pay_options

    def pay_spy(*args: Any) -> Any:
        options = pay_options(*args)
        taken.append(options is not None)
        return options

    monkeypatch.setattr(WechatAuth, "_direct", spy)
    monkeypatch.setattr(admin_routes, "_pay_options", pay_spy)
    fast_bank = Bank(make_profile({"bank": {"open_active": True}}), None, group_commit=True)
    fast = _exchange_all(fast_bank)
    # The direct forms answered what they could, and left the rest to FastAPI. The last
    # request (a text/plain control body) never reaches either: the guard refuses it.
    assert taken == [True, True, True, False, True, False, False, True,
                     True, True, True, True, False]

    async def never(*args: Any) -> bool:
        return False

    # The same requests where every one goes through FastAPI's routing and validation.
    monkeypatch.setattr(WechatAuth, "_direct", never)
    monkeypatch.setattr(admin_routes, "_PAY_PATH", re.compile(r"(?!)"))
    plain_bank = Bank(make_profile({"bank": {"open_active": True}}), None, group_commit=True)
    plain = _exchange_all(plain_bank)
    try:
        assert [status for status, *_ in fast] == [
            200, 200, 403, 400, 400, 400, 400, 200, 200, 200, 400, 404, 400, 400, 415]
        for index, (got, want) in enumerate(zip(fast, plain, strict=True)):
            assert got == want, f"request {index}: {REQUESTS[index]}"
        assert _timeline(fast_bank) == _timeline(plain_bank)
        assert json.loads(fast[9][2])["payer"] == {"openid": "oUpF8-given"}
        assert not fast_bank.invariants()
    finally:
        fast_bank.close()
        plain_bank.close()


def test_the_pay_route_still_needs_the_admin_token() -> None:
    bank = Bank(make_profile({"bank": {"open_active": True}}), None, group_commit=True)

    async def run() -> list[int]:
        token = "t0k3n-for-unit-tests"
        transport = httpx.ASGITransport(app=create_app(bank, admin_token=token))
        async with httpx.AsyncClient(transport=transport, base_url="http://bank") as client:
            path = "/_admin/wechat/orders/TOPUP-0001/pay"
            return [(await client.post(path, json={}, headers=headers)).status_code
                    for headers in ({}, {"X-Admin-Token": "wrong"}, {"X-Admin-Token": token})]

    try:
        bank.wechat.create_order(MCHID, json.loads(_order("TOPUP-0001")))
        bank.flush()
        assert asyncio.run(run()) == [401, 401, 200]
    finally:
        bank.close()


# -- notifications -----------------------------------------------------------------------------


class Platform:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json={"code": "SUCCESS"})


def _paid_bank(count: int, rules: list[dict[str, Any]] | None = None) -> Bank:
    patch: dict[str, Any] = {"bank": {"open_active": True}}
    if rules is not None:
        patch["wechat"] = {"notify": {"rules": rules}}
    bank = Bank(make_profile(patch), None)
    for n in range(1, count + 1):
        bank.wechat.create_order(MCHID, json.loads(_order(f"TOPUP-{n:04d}")))
        bank.wechat.pay(f"TOPUP-{n:04d}")
    return bank


def _notify_jobs(bank: Bank) -> list[str]:
    return [j.due_at.isoformat() for j in bank.scheduler.pending() if j.kind == JOB_KIND]


def test_a_burst_of_payments_owes_one_job_per_instant_and_every_delivery_goes_out() -> None:
    late = [{"name": "late", "match": {"out_trade_no": "TOPUP-000[12]"}, "action": {"delay": "30m"}}]
    bank = _paid_bank(6, late)
    try:
        assert _notify_jobs(bank) == ["2026-01-05T09:00:00+08:00", "2026-01-05T09:30:00+08:00"]
        platform = Platform()
        d = Dispatcher(bank, wall=lambda: 1_767_574_800.0, transport=httpx.MockTransport(platform))
        asyncio.run(d.advance_to(parse_datetime("2026-01-05T09:29:59")))
        assert len(platform.requests) == 4
        asyncio.run(d.advance_to(parse_datetime("2026-01-05T09:30:00")))
        sent = sorted(json.loads(r.content)["id"] for r in platform.requests)
        assert len(sent) == 6 == len(set(sent))
        dates = [parsedate_to_datetime(r.headers["Date"]) for r in platform.requests]
        assert [d.astimezone(CST).strftime("%H:%M:%S") for d in dates] == \
            ["09:00:00"] * 4 + ["09:30:00"] * 2
        # A payment at an instant whose job already ran still gets a job of its own.
        bank.wechat.create_order(MCHID, json.loads(_order("TOPUP-0007")))
        bank.wechat.pay("TOPUP-0007")
        assert _notify_jobs(bank) == ["2026-01-05T09:30:00+08:00"]
        assert [a["attempt"] for a in asyncio.run(d.deliver_due())] == [1]
    finally:
        bank.close()


def test_a_drain_sends_everything_due_in_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatcher_module, "_ROUND", 3)
    bank = _paid_bank(8)
    try:
        platform = Platform()
        d = Dispatcher(bank, wall=lambda: 1_767_574_800.0, transport=httpx.MockTransport(platform))
        made = asyncio.run(d.deliver_due())
        assert len(made) == 8 == len(platform.requests)
        assert {m["outcome"] for m in made} == {"SUCCESS"}
        assert asyncio.run(d.deliver_due()) == []
    finally:
        bank.close()


# -- the platform's side -----------------------------------------------------------------------


def _platform(tmp_path: Path, clock: str = "system") -> Context:
    ctx = Context.create(ClientConfig(store_path=str(tmp_path / "p.db"), clock=clock),
                         clock=FixedClock(datetime(2026, 1, 5, 12, 0, tzinfo=CST)))
    register_user(ctx, "u1", identity(51))
    for name in ("T1", "T2", "T3"):
        record_order(ctx, "u1", name, 10000)
    return ctx


def test_a_batch_applies_each_notification_alone(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _platform(tmp_path)
    from platform_client import topups

    real: Callable[..., str] = topups.credit_topup

    def credit(c: Context, **kw: Any) -> str:
        if kw["out_trade_no"] == "T2":
            raise RuntimeError("disk trouble")
        return real(c, **kw)

    monkeypatch.setattr(topups, "credit_topup", credit)
    batch = [notification(ctx, name, 10000) for name in ("T1", "T2", "T3")]
    answers = handle_notifications(ctx, [*batch, batch[0]])
    assert [status for status, _ in answers] == [200, 500, 200, 200]
    credited = ctx.store.all("SELECT out_trade_no, outcome FROM notifications ORDER BY id")
    assert [(r["out_trade_no"], r["outcome"]) for r in credited] == [
        ("T1", "credited"), ("T3", "credited"), ("T1", "duplicate")]
    assert ctx.store.scalar("SELECT count(*) FROM journal WHERE ref = 'T2'") == 0


def test_on_the_bank_clock_the_channel_date_is_the_reading(tmp_path: Path) -> None:
    stamp = {"Date": "Mon, 05 Jan 2026 04:30:15 GMT"}
    for clock, expected in (("bank", "2026-01-05T12:30:15+08:00"),
                            ("system", "2026-01-05T12:00:00+08:00")):
        ctx = _platform(tmp_path / clock, clock)
        headers, body = notification(ctx, "T1", 10000)
        assert handle_notification(ctx, {**headers, **stamp}, body)[0] == 200
        assert ctx.store.scalar("SELECT received_at FROM notifications") == expected
        assert ctx.store.scalar("SELECT credited_at FROM orders WHERE out_trade_no = 'T1'") == expected
