"""Matching WeChat's trade bill for one date with the platform's own orders (pure).

Kinds of item, one per (order, kind):

==================  ==================================================  ================
kind                meaning                                             what happens
==================  ==================================================  ================
MATCHED             bill SUCCESS row, platform credited, same amount    disbursed
DROPPED             bill SUCCESS row, platform never credited (掉单)     query, credit
AMOUNT_MISMATCH     same order, different amounts                       held for review
UNKNOWN_ORDER       bill row for an order the platform never created    recorded, held
PLATFORM_ONLY       platform credited it for this date, bill lacks it   held for review
CHANNEL_REFUND      a refund row (refunds made on the channel)          recorded, held
==================  ==================================================  ================

Example::

    >>> rows = [BillRow("T1", "42001", "SUCCESS", 10000), BillRow("T2", "42002", "SUCCESS", 500)]
    >>> orders = {"T1": PlatformOrder("T1", 10000, credited=True, bill_date="2026-01-05"),
    ...           "T3": PlatformOrder("T3", 700, credited=True, bill_date="2026-01-05")}
    >>> [(i.out_trade_no, i.kind) for i in match_bill("2026-01-05", rows, orders)]
    [('T1', 'MATCHED'), ('T2', 'UNKNOWN_ORDER'), ('T3', 'PLATFORM_ONLY')]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

KINDS = ("MATCHED", "DROPPED", "AMOUNT_MISMATCH", "UNKNOWN_ORDER", "PLATFORM_ONLY", "CHANNEL_REFUND")
HELD_KINDS = frozenset({"AMOUNT_MISMATCH", "UNKNOWN_ORDER", "PLATFORM_ONLY", "CHANNEL_REFUND"})


@dataclass(frozen=True)
class BillRow:
    """One detail row of the bill, amounts in fen."""

    out_trade_no: str
    transaction_id: str
    trade_state: str  # SUCCESS or REFUND
    amount: int  # 应结订单金额
    refund_amount: int = 0


@dataclass(frozen=True)
class PlatformOrder:
    out_trade_no: str
    amount: int
    credited: bool
    bill_date: str | None = None  # the WeChat day of its payment, when the platform knows it
    transaction_id: str | None = None
    # Credited by an earlier reconciliation (its notification never came): still a dropped
    # order, so a re-run gives the same items.
    recovered: bool = False


@dataclass(frozen=True)
class Item:
    out_trade_no: str
    kind: str
    bill_amount: int | None
    platform_amount: int | None
    transaction_id: str | None = None


def match_bill(bill_date: str, rows: Iterable[BillRow], orders: Mapping[str, PlatformOrder]) -> list[Item]:
    """Every item of the reconciliation of ``bill_date`` (sorted by order, then kind)."""
    items: list[Item] = []
    in_bill: set[str] = set()
    for row in rows:
        order = orders.get(row.out_trade_no)
        if row.trade_state != "SUCCESS":
            items.append(Item(row.out_trade_no, "CHANNEL_REFUND", row.refund_amount,
                              order.amount if order else None, row.transaction_id))
            continue
        in_bill.add(row.out_trade_no)
        if order is None:
            kind = "UNKNOWN_ORDER"
        elif order.amount != row.amount:
            kind = "AMOUNT_MISMATCH"
        elif order.credited and not order.recovered:
            kind = "MATCHED"
        else:
            kind = "DROPPED"
        items.append(Item(row.out_trade_no, kind, row.amount, order.amount if order else None,
                          row.transaction_id))
    for order in orders.values():
        if order.credited and order.bill_date == bill_date and order.out_trade_no not in in_bill:
            items.append(Item(order.out_trade_no, "PLATFORM_ONLY", None, order.amount,
                              order.transaction_id))
    return sorted(items, key=lambda i: (i.out_trade_no, KINDS.index(i.kind)))
