"""The event timeline: every request and state change, stamped with virtual clock time.

Events are written inside the same transaction as the change they describe, so the
timeline never shows a change that was rolled back.

Example::

    record_event(store, clock.now_us(), "account.opened", app_id="demo", ref="6231...",
                 detail={"serial": "S1"})
"""

from __future__ import annotations

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


def list_events(store: Store, *, since_id: int = 0, kind: str | None = None,
                limit: int = 500) -> list[dict[str, Any]]:
    """Events after ``since_id``; ``kind`` matches exactly or as a prefix ending in ``.``."""
    sql = "SELECT id, at_us, kind, app_id, ref, detail FROM events WHERE id > ?"
    params: list[Any] = [since_id]
    if kind:
        if kind.endswith("."):
            sql += " AND kind LIKE ?"
            params.append(kind + "%")
        else:
            sql += " AND kind = ?"
            params.append(kind)
    sql += " ORDER BY id LIMIT ?"
    params.append(limit)
    return [
        {**dict(row), "detail": orjson.loads(row["detail"])} for row in store.all(sql, params)
    ]
