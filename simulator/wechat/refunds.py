"""WeChat Pay APIv3 refunds (``/v3/refund/domestic/refunds``): create and query.

The money side is the channel's refund (:meth:`simulator.wechat.channel.WechatChannel.refund`,
the same one the control API uses: listed in the REFUND bill, deducted from its day's
settlement). This module speaks the v3 protocol around it: the request's order is named by
``out_trade_no`` or ``transaction_id``; ``amount.total`` must be the order's amount;
``amount.refund`` at most what is still refundable; the same ``out_refund_no`` again with the
same content gets the same answer. WeChat's codes (its published refund table):

    RESOURCE_NOT_EXISTS 404   no such order (订单不存在) / no such refund (退款单不存在)
    INVALID_REQUEST     400   the order is not paid (订单状态不正确), the refund is more than
                              what is refundable (申请退款金额超过订单可退金额), amount.total
                              is not the order's, out_refund_no used for another refund
    PARAM_ERROR         400   a body the schema refuses (neither order number, ...)

Refunds succeed at once (``status`` SUCCESS, ``success_time`` the clock's now).

Example::

    refunds = Refunds(bank.wechat)
    refunds.create("1900000109", {"out_trade_no": "T1", "out_refund_no": "R1",
                                  "amount": {"refund": 100, "total": 100, "currency": "CNY"}})
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from contracts.money import format_fen
from simulator.clock import from_us
from simulator.wechat.errors import InvalidRequest, ParamError, ResourceNotExists

if TYPE_CHECKING:
    import sqlite3

    from simulator.wechat.channel import WechatChannel


def _rfc3339(us: int) -> str:
    return from_us(us).isoformat(timespec="seconds")


class Refunds:
    def __init__(self, channel: WechatChannel) -> None:
        self.channel = channel

    def _order(self, mchid: str, body: dict[str, Any]) -> sqlite3.Row:
        store = self.channel.bank.store
        if body.get("transaction_id"):
            row = store.one("SELECT * FROM wechat_orders WHERE mchid = ? AND transaction_id = ?",
                            (mchid, body["transaction_id"]))
        elif body.get("out_trade_no"):
            row = store.one("SELECT * FROM wechat_orders WHERE mchid = ? AND out_trade_no = ?",
                            (mchid, body["out_trade_no"]))
        else:
            raise ParamError("give transaction_id or out_trade_no")
        if row is None:
            raise ResourceNotExists("订单不存在: no such order for this merchant")
        return row

    def create(self, mchid: str, body: dict[str, Any]) -> dict[str, Any]:
        store = self.channel.bank.store
        amount = body["amount"]
        with store.transaction():
            order = self._order(mchid, body)
            same = store.one("SELECT * FROM wechat_refunds WHERE mchid = ? AND out_refund_no = ?",
                             (mchid, body["out_refund_no"]))
            if same is not None:
                if same["out_trade_no"] != order["out_trade_no"] or same["amount_fen"] != amount["refund"]:
                    raise InvalidRequest(f"out_refund_no {body['out_refund_no']} was used for another refund")
                return self._view(same, order)
            if order["state"] not in ("SUCCESS", "REFUND"):
                raise InvalidRequest(f"订单状态不正确: order {order['out_trade_no']} is {order['state']}")
            if amount["total"] != order["total_fen"]:
                raise InvalidRequest(f"amount.total {amount['total']} is not the order's "
                                     f"{order['total_fen']}")
            refunded = int(store.scalar("SELECT COALESCE(SUM(amount_fen), 0) FROM wechat_refunds "
                                        "WHERE mchid = ? AND out_trade_no = ?",
                                        (mchid, order["out_trade_no"])))
            if refunded + amount["refund"] > order["total_fen"]:
                raise InvalidRequest(f"申请退款金额超过订单可退金额: {order['total_fen'] - refunded} fen "
                                     "can still be refunded")
            self.channel.refund(order["out_trade_no"], format_fen(amount["refund"]), mchid=mchid,
                                out_refund_no=body["out_refund_no"])
        return self.query(mchid, body["out_refund_no"])

    def query(self, mchid: str, out_refund_no: str) -> dict[str, Any]:
        store = self.channel.bank.store
        refund = store.one("SELECT * FROM wechat_refunds WHERE mchid = ? AND out_refund_no = ?",
                           (mchid, out_refund_no))
        if refund is None:
            raise ResourceNotExists(f"退款单不存在: no refund {out_refund_no}")
        order = store.one("SELECT * FROM wechat_orders WHERE mchid = ? AND out_trade_no = ?",
                          (mchid, refund["out_trade_no"]))
        assert order is not None  # a refund always belongs to an order
        return self._view(refund, order)

    def _view(self, refund: sqlite3.Row, order: sqlite3.Row) -> dict[str, Any]:
        when = _rfc3339(refund["refunded_us"])
        return {"refund_id": refund["refund_id"], "out_refund_no": refund["out_refund_no"],
                "transaction_id": order["transaction_id"], "out_trade_no": refund["out_trade_no"],
                "channel": "ORIGINAL", "user_received_account": "支付用户零钱",
                "success_time": when, "create_time": when, "status": "SUCCESS",
                "funds_account": "UNSETTLED",
                "amount": {"total": order["total_fen"], "refund": refund["amount_fen"],
                           "payer_total": order["total_fen"], "payer_refund": refund["amount_fen"],
                           "settlement_refund": refund["amount_fen"],
                           "settlement_total": order["total_fen"], "discount_refund": 0,
                           "currency": "CNY"}}
