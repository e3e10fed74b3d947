"""The event timeline: every request and state change, stamped with virtual clock time.

Events are written inside the same transaction as the change they describe, so the
timeline never shows a change that was rolled back.

Example::

    record_event(store, clock.now_us(), "account.opened", app_id="demo", ref="6231...",
                 detail={"serial": "S1"})
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from simulator.store import Store


def _detail(detail: dict[str, Any]) -> str:
    # orjson: the timeline is written on every request, and the stdlib encoder was a
    # visible share of a request's cost.
    return orjson.dumps(detail, option=orjson.OPT_SORT_KEYS).decode()


def record_event(store: Store, at_us: int, kind: str, *, app_id: str | None = None,
                 ref: str | None = None, detail: dict[str, Any] | None = None) -> None:
    store.execute(
        "INSERT INTO events(at_us, kind, app_id, ref, detail) VALUES (?, ?, ?, ?, ?)",
        (at_us, kind, app_id, ref, _detail(detail or {})),
    )


def record_events(store: Store, rows: list[tuple[int, str, str | None, str | None, dict[str, Any]]]) -> None:
    """Many events at once, in order: (at_us, kind, app_id, ref, detail) tuples."""
    # Multi-row VALUES lists (Store.insert_rows): the server writes every request of a
    # group commit here, and one statement per 32 rows costs about half of one per row.
    dumps, sort_keys = orjson.dumps, orjson.OPT_SORT_KEYS
    store.insert_rows("INSERT INTO events(at_us, kind, app_id, ref, detail)",
                      [(at, kind, app_id, ref, dumps(detail, option=sort_keys).decode())
                       for at, kind, app_id, ref, detail in rows], per_statement=32)


@dataclass(frozen=True)
class EventFilter:
    """Which events a timeline query wants (``GET /_admin/events``, ``banksim events``).

    ``kind`` matches exactly, or as a prefix when it ends in ``.``; ``account``, ``serial``
    and ``order`` match the event's ``ref`` or the same value under ``detail.account_no``,
    ``detail.serial`` / ``detail.request_serial`` and ``detail.out_trade_no``; ``batch``
    (a batch number) matches ``ref`` or ``detail.batch_no``, or a file of that batch (its
    name, or a reply's, in ``ref`` or ``detail.file``: ``..._<batch>.txt``, ``..._<batch>_RET.txt``).
    """

    since_id: int = 0
    kind: str | None = None
    account: str | None = None
    serial: str | None = None
    batch: int | None = None
    order: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        sql, params = "id > ?", list[Any]([self.since_id])
        if self.kind:
            sql += " AND kind LIKE ?" if self.kind.endswith(".") else " AND kind = ?"
            params.append(self.kind + "%" if self.kind.endswith(".") else self.kind)
        for value, keys in ((self.account, ("account_no",)), (self.serial, ("serial", "request_serial")),
                            (self.order, ("out_trade_no",))):
            if value:
                sql += " AND (ref = ?" + "".join(f" OR json_extract(detail, '$.{k}') = ?" for k in keys) + ")"
                params += [value] * (1 + len(keys))
        if self.batch is not None:
            no = str(int(self.batch))
            names = " OR ".join(f"{col} GLOB ? OR {col} GLOB ?" for col in
                                ("ref", "json_extract(detail, '$.file')"))
            sql += (" AND (ref = ? OR CAST(json_extract(detail, '$.batch_no') AS TEXT) = ? OR "
                    f"{names})")
            params += [no, no] + [f"*_{no}.*", f"*_{no}_*"] * 2
        return sql, params


def list_events(store: Store, *, since_id: int = 0, kind: str | None = None,
                limit: int = 500, where: EventFilter | None = None,
                newest: bool = False) -> list[dict[str, Any]]:
    """Events after ``since_id`` matching ``where`` (or ``kind``), oldest first.

    ``limit`` events from the oldest match on, or with ``newest`` the latest ``limit``
    (still oldest first); :func:`count_events` says how many matched in all.
    """
    query = where or EventFilter(since_id=since_id, kind=kind)
    cond, params = query.where()
    sql = f"SELECT id, at_us, kind, app_id, ref, detail FROM events WHERE {cond} ORDER BY id"
    if newest:
        sql = f"SELECT * FROM ({sql} DESC LIMIT ?) ORDER BY id"
    else:
        sql += " LIMIT ?"
    rows = store.all(sql, [*params, limit])
    return [{**dict(row), "detail": orjson.loads(row["detail"])} for row in rows]


def count_events(store: Store, where: EventFilter) -> int:
    """How many events match ``where`` (for "N more not shown")."""
    cond, params = where.where()
    return int(store.scalar(f"SELECT count(*) FROM events WHERE {cond}", params) or 0)
