"""The fake WeChat Pay channel's state and operations: orders, payments, refunds, bills, T+1.

One :class:`WechatChannel` per Bank, sharing its store, clock, scheduler and ledger. Orders
are NATIVE (QR code) orders a platform creates through the v3 API; the user "pays" through
the control API at the clock's now. A payment owes a notification (see
:mod:`simulator.wechat.notifications`) and, for its WeChat day, a T+1 settlement job at
``wechat.settle_at``: the day's orders less fees and refunds, posted as one balanced ledger
transaction from the bank's clearing account into the platform's 98 account. A day whose
refunds exceed its payments (net below zero) posts nothing and carries its negative net
forward, deducted from the next settlements: settlements are never negative, and the
cumulative settlements always equal the cumulative bill nets plus the balance carried
(the ``wechat-settlement-conserved`` invariant). Bills are built
from the stored orders and refunds of a WeChat day and served from T+1 ``bill_ready_at``.

Example::

    channel = bank.wechat
    channel.create_order("1900000109", {"appid": "wxd678efh567hg6787", "mchid": "1900000109",
                         "description": "余额充值", "out_trade_no": "TOPUP-1",
                         "notify_url": "http://127.0.0.1:9000/notify", "amount": {"total": 100}})
    channel.pay("TOPUP-1")                      # trade_state SUCCESS, notification owed
    bank.scheduler.advance(timedelta(days=1, hours=1))   # settled into the 98 account
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from contracts.money import AmountFormatError, format_fen, parse_yuan
from contracts.wechat_bill import BILL_TYPES, BillRow, payment_row, refund_row, render_bill
from simulator.clock import from_us
from simulator.config import WechatMerchant, WechatSettings
from simulator.domain.ledger import CLEARING_ACCOUNT, Leg
from simulator.domain.wechat_rules import (
    bill_ready_at,
    decide_notify,
    default_openid,
    fee_fen,
    fen_to_fee,
    rate_text,
    refund_id,
    settle_at,
    transaction_id,
    wechat_date,
)
from simulator.events import record_event
from simulator.scheduler import Job
from simulator.wechat.errors import (
    NoStatementExist,
    OrderClosed,
    OrderNotExist,
    OrderPaid,
    OutTradeNoUsed,
    ParamError,
    StatementCreating,
)
from simulator.wechat.keys import ChannelKeys
from simulator.wechat.notifications import Notifications
from simulator.wechat.order_types import ANSWER_KEYS, answer_value, order_openid, order_trade_type
from simulator.wechat.replay import NonceMemory

if TYPE_CHECKING:
    import sqlite3
    from typing import TypeAlias

    from simulator.bank import Bank

    # An order as read (a row) or as just written (a dict of the same columns).
    OrderRow: TypeAlias = sqlite3.Row | Mapping[str, Any]

SETTLE_JOB = "wechat.settle"
_STATE_DESC = {"SUCCESS": "支付成功", "NOTPAY": "订单未支付", "CLOSED": "订单已关闭",
               "REFUND": "订单发生过退款"}
_ORDER_FIELDS = ("appid", "description", "notify_url", "total", "currency", "attach")


def _rfc3339(us: int) -> str:
    return from_us(us).isoformat(timespec="seconds")


def _naive(us: int) -> datetime:
    return from_us(us).replace(tzinfo=None)


class WechatChannel:
    def __init__(self, bank: Bank) -> None:
        self.bank = bank
        self.notifications = Notifications(bank.store, bank.scheduler, bank.clock)
        self.nonces = NonceMemory()
        self._keys: ChannelKeys | None = None
        bank.scheduler.register(SETTLE_JOB, self._settle)

    # -- helpers ------------------------------------------------------------------------

    @property
    def _settings(self) -> WechatSettings:
        return self.bank.profile.wechat

    @property
    def keys(self) -> ChannelKeys:
        """The channel's keys for the current profile (rebuilt when the profile changes)."""
        wechat = self.bank.profile.wechat
        if self._keys is None or self._keys.settings is not wechat:
            self._keys = ChannelKeys(wechat, self.bank.state_dir)
        return self._keys

    def merchant(self, mchid: str) -> WechatMerchant | None:
        merchant: WechatMerchant | None = self.bank.profile.wechat.merchant(mchid)
        return merchant

    def _order_row(self, mchid: str, out_trade_no: str) -> sqlite3.Row:
        row = self.bank.store.one("SELECT * FROM wechat_orders WHERE mchid = ? AND out_trade_no = ?",
                                  (mchid, out_trade_no))
        if row is None:
            raise OrderNotExist(f"no order {out_trade_no} for merchant {mchid}")
        return row

    def _find(self, out_trade_no: str, mchid: str | None) -> sqlite3.Row:
        """An order by out_trade_no alone (control API), or by merchant and out_trade_no."""
        if mchid is not None:
            return self._order_row(mchid, out_trade_no)
        # The primary key is (mchid, out_trade_no): asking per merchant of the profile uses
        # it, where out_trade_no alone would scan every order. Orders of a merchant since
        # removed from the profile are still found by the scan.
        merchants = [m.mchid for m in self._settings.merchants]
        marks = ", ".join("?" * len(merchants))
        rows = self.bank.store.all(f"SELECT * FROM wechat_orders WHERE mchid IN ({marks}) "
                                   "AND out_trade_no = ?", (*merchants, out_trade_no))
        if not rows:
            rows = self.bank.store.all("SELECT * FROM wechat_orders WHERE out_trade_no = ?",
                                       (out_trade_no,))
        if not rows:
            raise OrderNotExist(f"no order {out_trade_no}")
        if len(rows) > 1:
            raise ParamError(f"several merchants have an order {out_trade_no}: give mchid")
        return rows[0]

    @staticmethod
    def _view(row: OrderRow) -> dict[str, Any]:
        """The order as the v3 query answers it (also the notification's resource)."""
        paid = row["success_us"] is not None
        view: dict[str, Any] = {"appid": row["appid"], "mchid": row["mchid"],
                                "out_trade_no": row["out_trade_no"]}
        if paid:
            view["transaction_id"] = row["transaction_id"]
        view.update(trade_type=order_trade_type(row), trade_state=row["state"],
                    trade_state_desc=_STATE_DESC[row["state"]])
        if paid:
            view["bank_type"] = row["bank_type"]
            view["success_time"] = _rfc3339(row["success_us"])
        view["payer"] = {"openid": row["openid"]} if paid else {}
        view["amount"] = {"total": row["total_fen"], "payer_total": row["total_fen"] if paid else 0,
                          "currency": "CNY"}
        if row["attach"] is not None:
            view["attach"] = row["attach"]
        return view

    # -- the v3 API ---------------------------------------------------------------------

    def create_order(self, signer: str, body: dict[str, Any], trade_type: str = "NATIVE") -> dict[str, str]:
        """Create an order (NATIVE, JSAPI, APP or H5); the same content again gets the same answer.

        The answer is NATIVE ``code_url``, JSAPI/APP ``prepay_id``, H5 ``h5_url``; it is kept
        in the ``code_url`` column, and the trade type (and a JSAPI payer's openid) in the
        order's fingerprint (NATIVE fingerprints are as they always were).
        """
        merchant = self.merchant(signer)
        if merchant is None or body["mchid"] != signer:
            raise ParamError(f"mchid {body['mchid']} is not the merchant that signed ({signer})")
        if body["appid"] != merchant.appid:
            raise ParamError(f"appid {body['appid']} is not bound to merchant {signer}")
        amount = body["amount"]
        content = {**{k: body.get(k) for k in _ORDER_FIELDS[:3]}, "total": amount["total"],
                   "currency": amount.get("currency") or "CNY", "attach": body.get("attach")}
        if trade_type != "NATIVE":
            content["trade_type"] = trade_type
            if (body.get("payer") or {}).get("openid"):
                content["openid"] = body["payer"]["openid"]
        fingerprint = json.dumps(content, ensure_ascii=False, sort_keys=True)
        answer_key = ANSWER_KEYS[trade_type]
        store = self.bank.store
        with store.transaction():
            existing = store.one("SELECT fingerprint, code_url FROM wechat_orders "
                                 "WHERE mchid = ? AND out_trade_no = ?", (signer, body["out_trade_no"]))
            if existing is not None:
                if existing["fingerprint"] != fingerprint:
                    raise OutTradeNoUsed(f"out_trade_no {body['out_trade_no']} was used for "
                                         "another order")
                return {answer_key: existing["code_url"]}
            url = answer_value(trade_type, self.bank.profile.seed, signer, body["out_trade_no"])
            now = self.bank.clock.now_us()
            store.execute(
                "INSERT INTO wechat_orders(mchid, out_trade_no, appid, description, notify_url, "
                "total_fen, attach, fingerprint, code_url, state, created_us) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'NOTPAY', ?)",
                (signer, body["out_trade_no"], body["appid"], body["description"],
                 body["notify_url"], amount["total"], body.get("attach"), fingerprint, url, now))
            record_event(store, now, "wechat.order.created", ref=body["out_trade_no"],
                         detail={"mchid": signer, "total": amount["total"]})
        return {answer_key: url}

    def query_order(self, mchid: str, out_trade_no: str) -> dict[str, Any]:
        return self._view(self._order_row(mchid, out_trade_no))

    def query_by_transaction_id(self, mchid: str, transaction_id: str) -> dict[str, Any]:
        """An order by WeChat's order number (only a paid order has one)."""
        row = self.bank.store.one("SELECT * FROM wechat_orders WHERE mchid = ? AND transaction_id = ?",
                                  (mchid, transaction_id))
        if row is None:
            raise OrderNotExist(f"no order with transaction_id {transaction_id} for merchant {mchid}")
        return self._view(row)

    def close_order(self, mchid: str, out_trade_no: str) -> None:
        """Close an unpaid order; closing a closed one again is fine, a paid one is not."""
        store = self.bank.store
        with store.transaction():
            row = self._order_row(mchid, out_trade_no)
            if row["state"] in ("SUCCESS", "REFUND"):
                raise OrderPaid(f"order {out_trade_no} is paid; refund it instead")
            if row["state"] == "CLOSED":
                return
            now = self.bank.clock.now_us()
            store.execute("UPDATE wechat_orders SET state = 'CLOSED', closed_us = ? "
                          "WHERE mchid = ? AND out_trade_no = ?", (now, mchid, out_trade_no))
            record_event(store, now, "wechat.order.closed", ref=out_trade_no, detail={"mchid": mchid})

    # -- the control API ----------------------------------------------------------------

    def pay(self, out_trade_no: str, *, mchid: str | None = None, openid: str | None = None,
            bank_type: str = "OTHERS") -> dict[str, Any]:
        """The user pays the order now: SUCCESS, a notification owed, settlement scheduled."""
        bank, store = self.bank, self.bank.store
        seed = bank.profile.seed
        with store.transaction():
            row = self._find(out_trade_no, mchid)
            mchid = str(row["mchid"])
            if row["state"] in ("SUCCESS", "REFUND"):
                raise OrderPaid(f"order {out_trade_no} is already paid")
            if row["state"] == "CLOSED":
                raise OrderClosed(f"order {out_trade_no} is closed")
            merchant = self.merchant(mchid)
            if merchant is None:
                raise ParamError(f"merchant {mchid} is no longer in the profile")
            now = bank.clock.now()
            now_us = bank.clock.now_us()
            day = wechat_date(now, self._settings.cutover)
            plan = decide_notify(self._settings.notify, seed, mchid, out_trade_no, row["total_fen"])
            paid_fields = {
                "state": "SUCCESS", "transaction_id": transaction_id(seed, mchid, out_trade_no),
                "openid": openid or order_openid(row) or default_openid(seed, mchid, out_trade_no),
                "bank_type": bank_type, "success_us": now_us, "bill_date": day.isoformat(),
                "fee_fen": fee_fen(row["total_fen"], merchant.fee_rate),
                "fee_rate": str(merchant.fee_rate), "notify_fault": plan.describe()}
            store.execute(
                "UPDATE wechat_orders SET state = :state, transaction_id = :transaction_id, "
                "openid = :openid, bank_type = :bank_type, success_us = :success_us, "
                "bill_date = :bill_date, fee_fen = :fee_fen, fee_rate = :fee_rate, "
                "notify_fault = :notify_fault WHERE mchid = :mchid AND out_trade_no = :out_trade_no",
                {**paid_fields, "mchid": mchid, "out_trade_no": out_trade_no})
            # The row as just written, without reading it back; an order paid now has no
            # refunds yet.
            paid = {**dict(row), **paid_fields}
            self.notifications.create(mchid=mchid, out_trade_no=out_trade_no,
                                      resource=self._view(paid), plan=plan, seed=seed)
            self._schedule_settlement(mchid, day)
            record_event(store, now_us, "wechat.paid", ref=out_trade_no,
                         detail={"mchid": mchid, "total": row["total_fen"], "bill_date": day.isoformat(),
                                 "notify": plan.describe()})
            return self.admin_view(paid, refunds=())

    def refund(self, out_trade_no: str, amount: str, *, mchid: str | None = None,
               out_refund_no: str | None = None) -> dict[str, Any]:
        """Refund (part of) a paid order now; listed in the REFUND bill of today's WeChat day."""
        try:
            amount_fen = parse_yuan(amount)
        except AmountFormatError as exc:
            raise ParamError(str(exc)) from None
        if amount_fen <= 0:
            raise ParamError("a refund must be positive")
        bank, store = self.bank, self.bank.store
        with store.transaction():
            row = self._find(out_trade_no, mchid)
            mchid = str(row["mchid"])
            if row["state"] not in ("SUCCESS", "REFUND"):
                raise ParamError(f"order {out_trade_no} is {row['state']}: only a paid order is refunded")
            refunds = store.all("SELECT * FROM wechat_refunds WHERE mchid = ? AND out_trade_no = ? "
                                "ORDER BY refunded_us, out_refund_no", (mchid, out_trade_no))
            number = out_refund_no or f"{out_trade_no}-R{len(refunds) + 1}"
            same = store.one("SELECT * FROM wechat_refunds WHERE mchid = ? AND out_refund_no = ?",
                             (mchid, number))
            if same is not None:
                if same["out_trade_no"] != out_trade_no or same["amount_fen"] != amount_fen:
                    raise ParamError(f"out_refund_no {number} was used for another refund")
                return self._refund_view(same, row)
            refunded = sum(r["amount_fen"] for r in refunds)
            if refunded + amount_fen > row["total_fen"]:
                raise ParamError(f"refunds would reach {format_fen(refunded + amount_fen)}, the order "
                                 f"is {format_fen(row['total_fen'])}")
            now = bank.clock.now()
            now_us = bank.clock.now_us()
            day = wechat_date(now, self._settings.cutover)
            store.execute(
                "INSERT INTO wechat_refunds(mchid, out_refund_no, out_trade_no, refund_id, amount_fen, "
                "refunded_us, bill_date) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (mchid, number, out_trade_no, refund_id(bank.profile.seed, mchid, number), amount_fen,
                 now_us, day.isoformat()))
            store.execute("UPDATE wechat_orders SET state = 'REFUND' WHERE mchid = ? AND out_trade_no = ?",
                          (mchid, out_trade_no))
            # The refund is deducted from its own day's settlement, even on a day without payments.
            self._schedule_settlement(mchid, day)
            record_event(store, now_us, "wechat.refunded", ref=out_trade_no,
                         detail={"mchid": mchid, "out_refund_no": number, "amount": amount})
            made = store.one("SELECT * FROM wechat_refunds WHERE mchid = ? AND out_refund_no = ?",
                             (mchid, number))
            assert made is not None
            return self._refund_view(made, self._order_row(mchid, out_trade_no))

    def _refund_view(self, refund: sqlite3.Row, order: sqlite3.Row) -> dict[str, Any]:
        return {"out_refund_no": refund["out_refund_no"], "refund_id": refund["refund_id"],
                "out_trade_no": refund["out_trade_no"], "transaction_id": order["transaction_id"],
                "amount": format_fen(refund["amount_fen"]), "status": "SUCCESS",
                "success_time": _rfc3339(refund["refunded_us"]), "bill_date": refund["bill_date"],
                "order": self.admin_view(order)}

    def admin_view(self, row: OrderRow,
                   refunds: Sequence[sqlite3.Row] | None = None) -> dict[str, Any]:
        """The query answer plus what the control API shows (bill date, fee, faults, refunds).

        ``refunds`` are the order's refund rows when the caller has them (None: read them).
        """
        if refunds is None:
            refunds = self.bank.store.all(
                "SELECT out_refund_no, refund_id, amount_fen, refunded_us, bill_date FROM wechat_refunds "
                "WHERE mchid = ? AND out_trade_no = ? ORDER BY refunded_us, out_refund_no",
                (row["mchid"], row["out_trade_no"]))
        return {**self._view(row), "description": row["description"], "notify_url": row["notify_url"],
                "created_at": _rfc3339(row["created_us"]),
                "closed_at": _rfc3339(row["closed_us"]) if row["closed_us"] else None,
                "bill_date": row["bill_date"],
                "fee": format_fen(row["fee_fen"]) if row["fee_fen"] is not None else None,
                "notify_fault": row["notify_fault"],
                "refunds": [{"out_refund_no": r["out_refund_no"], "refund_id": r["refund_id"],
                             "amount": format_fen(r["amount_fen"]),
                             "success_time": _rfc3339(r["refunded_us"]), "bill_date": r["bill_date"]}
                            for r in refunds]}

    def orders(self, bill_date: date | None = None) -> list[dict[str, Any]]:
        """Orders, all or those paid on one WeChat day, in creation order."""
        if bill_date is None:
            rows = self.bank.store.all("SELECT * FROM wechat_orders ORDER BY created_us, out_trade_no")
        else:
            rows = self.bank.store.all("SELECT * FROM wechat_orders WHERE bill_date = ? "
                                       "ORDER BY success_us, out_trade_no", (bill_date.isoformat(),))
        return [self.admin_view(r) for r in rows]

    # -- bills ----------------------------------------------------------------------------

    def bill_rows(self, mchid: str, bill_date: date, bill_type: str) -> list[BillRow]:
        """The rows of one merchant's bill for a WeChat day, in (time, out_trade_no) order."""
        store, day = self.bank.store, bill_date.isoformat()
        keyed: list[tuple[tuple[datetime, str, int, str], BillRow]] = []
        if bill_type in ("ALL", "SUCCESS"):
            for o in store.all("SELECT * FROM wechat_orders WHERE mchid = ? AND bill_date = ?",
                               (mchid, day)):
                row = payment_row(
                    trade_time=_naive(o["success_us"]), appid=o["appid"], mchid=mchid,
                    transaction_id=o["transaction_id"], out_trade_no=o["out_trade_no"],
                    openid=o["openid"], total_fen=o["total_fen"], fee=fen_to_fee(o["fee_fen"]),
                    rate=rate_text_of(o["fee_rate"]), body=o["description"],
                    attach=o["attach"] or "", bank_type=o["bank_type"], trade_type=order_trade_type(o))
                keyed.append(((row.trade_time, row.out_trade_no, 0, ""), row))
        if bill_type in ("ALL", "REFUND"):
            for r in store.all(
                    "SELECT r.*, o.appid, o.transaction_id, o.openid, o.fee_rate, o.description, "
                    "o.attach, o.bank_type FROM wechat_refunds r JOIN wechat_orders o "
                    "ON o.mchid = r.mchid AND o.out_trade_no = r.out_trade_no "
                    "WHERE r.mchid = ? AND r.bill_date = ?", (mchid, day)):
                row = refund_row(
                    trade_time=_naive(r["refunded_us"]), appid=r["appid"], mchid=mchid,
                    transaction_id=r["transaction_id"], out_trade_no=r["out_trade_no"],
                    openid=r["openid"], refund_id=r["refund_id"], out_refund_no=r["out_refund_no"],
                    refund_fen=r["amount_fen"], rate=rate_text_of(r["fee_rate"]),
                    body=r["description"], attach=r["attach"] or "", bank_type=r["bank_type"])
                keyed.append(((row.trade_time, row.out_trade_no, 1, row.out_refund_no), row))
        keyed.sort(key=lambda item: item[0])
        return [row for _, row in keyed]

    def bill(self, mchid: str, bill_date: date, bill_type: str) -> bytes:
        """The bill's bytes, once it is available; the coded error otherwise."""
        if bill_type not in BILL_TYPES:
            raise ParamError(f"bill_type must be one of {', '.join(BILL_TYPES)}")
        settings = self._settings
        now = self.bank.clock.now()
        if now < bill_ready_at(bill_date, settings):
            if bill_date > wechat_date(now, settings.cutover):
                raise NoStatementExist(f"{bill_date} is in the future")
            raise StatementCreating(f"the bill of {bill_date} is available from "
                                    f"{bill_ready_at(bill_date, settings).isoformat()}")
        rows = self.bill_rows(mchid, bill_date, bill_type)
        if not rows:
            raise NoStatementExist(f"no {bill_type} transactions on {bill_date}")
        return render_bill(rows)

    @staticmethod
    def bill_token(merchant: WechatMerchant, bill_date: date, bill_type: str) -> str:
        """An opaque download token, bound to the merchant by its key (nothing stored)."""
        subject = f"{bill_date:%Y%m%d}-{bill_type}"
        tag = hmac.new(merchant.api_v3_key.encode(), f"{merchant.mchid}|{subject}".encode(),
                       hashlib.sha256).hexdigest()[:24]
        return f"{subject}-{tag}"

    @classmethod
    def read_bill_token(cls, merchant: WechatMerchant, token: str) -> tuple[date, str]:
        try:
            day_text, bill_type, _ = token.split("-")
            bill_date = datetime.strptime(day_text, "%Y%m%d").date()
        except ValueError:
            raise ParamError("the download token is not valid") from None
        if bill_type not in BILL_TYPES or not hmac.compare_digest(
                cls.bill_token(merchant, bill_date, bill_type), token):
            raise ParamError("the download token is not valid for this merchant")
        return bill_date, bill_type

    # -- T+1 settlement -----------------------------------------------------------------

    def _schedule_settlement(self, mchid: str, day: date) -> None:
        key = f"{SETTLE_JOB}:{mchid}:{day.isoformat()}"
        # Every payment of the day asks; all but the first find the job with one lookup.
        if self.bank.store.one("SELECT 1 FROM jobs WHERE dedupe_key = ?", (key,)) is None:
            self.bank.scheduler.schedule(SETTLE_JOB, settle_at(day, self._settings),
                                         {"mchid": mchid, "bill_date": day.isoformat()},
                                         dedupe_key=key)

    def _settle(self, job: Job) -> None:
        bank, store = self.bank, self.bank.store
        mchid, day = str(job.payload["mchid"]), str(job.payload["bill_date"])
        merchant = self.merchant(mchid)
        if merchant is None:
            raise RuntimeError(f"merchant {mchid} is not in the profile; cannot settle {day}")
        platform = bank.profile.platform(merchant.app_id)
        if platform is None:  # pragma: no cover - the profile validates merchants' platforms
            raise RuntimeError(f"no platform {merchant.app_id} for merchant {mchid}")
        if store.one("SELECT 1 FROM wechat_settlements WHERE mchid = ? AND bill_date = ?", (mchid, day)):
            return
        orders = store.one("SELECT COUNT(*) AS n, COALESCE(SUM(total_fen), 0) AS gross, "
                           "COALESCE(SUM(fee_fen), 0) AS fees FROM wechat_orders "
                           "WHERE mchid = ? AND bill_date = ?", (mchid, day))
        assert orders is not None
        refunds = int(store.scalar("SELECT COALESCE(SUM(amount_fen), 0) FROM wechat_refunds "
                                   "WHERE mchid = ? AND bill_date = ?", (mchid, day)))
        gross, fees = int(orders["gross"]), int(orders["fees"])
        net = gross - fees - refunds
        # Carry-forward: a negative net (refunds above the day's payments, paid by WeChat out
        # of the merchant's funds) is deducted from the following settlements, which are
        # never negative; nothing is paid by the bank and nothing is forgotten.
        carried_in = self._carried(mchid, day)
        pay = net - carried_in
        now_us = bank.clock.now_us()
        txn_id = None
        if pay > 0:
            txn_id = bank.ledger.post(
                kind="wechat_settlement", at_us=now_us, business_date=bank.clock.business_date(),
                app_id=platform.app_id, ref=f"WX-{mchid}-{day.replace('-', '')}",
                memo=f"微信支付{day}结算",
                legs=[Leg(CLEARING_ACCOUNT, -pay), Leg(platform.supervision_account, pay)])
        store.execute(
            "INSERT INTO wechat_settlements(mchid, bill_date, app_id, orders, gross_fen, fees_fen, "
            "refunds_fen, net_fen, txn_id, settled_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (mchid, day, platform.app_id, int(orders["n"]), gross, fees, refunds, net, txn_id, now_us))
        record_event(store, now_us, "wechat.settled", app_id=platform.app_id, ref=day,
                     detail={"mchid": mchid, "net": format_fen(net), "carried_in": format_fen(carried_in),
                             "paid": format_fen(max(pay, 0)), "carried_forward": format_fen(max(-pay, 0)),
                             "txn_id": txn_id})

    def _carried(self, mchid: str, before: str) -> int:
        """The negative balance (fen, >= 0) carried into the settlement of day ``before``:
        what the merchant's settlements so far were paid beyond their days' nets."""
        row = self.bank.store.one(
            "SELECT COALESCE(SUM(s.net_fen), 0) AS nets, COALESCE(SUM(p.amount_fen), 0) AS paid "
            "FROM wechat_settlements s LEFT JOIN postings p ON p.txn_id = s.txn_id AND p.amount_fen > 0 "
            "WHERE s.mchid = ? AND s.bill_date < ?", (mchid, before))
        assert row is not None
        return max(0, int(row["paid"]) - int(row["nets"]))

    def settlements(self) -> list[dict[str, Any]]:
        """Every settlement in (date, merchant) order: the day's bill figures, the balance
        carried in from earlier negative days, what was paid into the 98 account and the
        balance carried forward (``net - carried_in = paid - carried_forward``)."""
        rows = self.bank.store.all(
            "SELECT s.*, p.account_no AS supervision, COALESCE(p.amount_fen, 0) AS paid_fen "
            "FROM wechat_settlements s LEFT JOIN postings p "
            "ON p.txn_id = s.txn_id AND p.amount_fen > 0 ORDER BY s.bill_date, s.mchid")
        carried: dict[str, int] = {}
        out = []
        for r in rows:
            carried_in = carried.get(r["mchid"], 0)
            carried[r["mchid"]] = max(0, carried_in - r["net_fen"])
            out.append({"mchid": r["mchid"], "bill_date": r["bill_date"], "app_id": r["app_id"],
                        "orders": r["orders"], "gross": format_fen(r["gross_fen"]),
                        "fees": format_fen(r["fees_fen"]), "refunds": format_fen(r["refunds_fen"]),
                        "net": format_fen(r["net_fen"]), "carried_in": format_fen(carried_in),
                        "paid": format_fen(r["paid_fen"]),
                        "carried_forward": format_fen(carried[r["mchid"]]),
                        "posting_id": r["txn_id"], "account_no": r["supervision"],
                        "settled_at": _rfc3339(r["settled_us"])})
        return out


def rate_text_of(stored: str) -> str:
    """The bill's 费率 of a rate stored as text at payment (``"0.0060"`` -> ``"0.60%"``)."""
    return rate_text(Decimal(stored))
