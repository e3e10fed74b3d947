"""``GET /_admin/memory`` and ``simulator.memory``: the figures answer and follow the process."""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from simulator.bank import Bank
from simulator.http.app import create_app
from simulator.memory import cache_cap_bytes, memory_view, sqlite_heap
from simulator.store import CACHE_KIB, Store

FIELDS = {"rss_mb", "sqlite_heap_mb", "sqlite_heap_peak_mb", "sqlite_heap_note", "python_blocks",
          "gc_objects", "sqlite_cache_cap_mb"}


@pytest.fixture
def client(bank: Bank) -> Iterator[TestClient]:
    with TestClient(create_app(bank)) as c:
        yield c


def test_the_memory_view_answers_with_plausible_figures(client: TestClient) -> None:
    response = client.get("/_admin/memory")
    assert response.status_code == 200
    view = response.json()
    assert set(view) == FIELDS
    assert view["sqlite_heap_note"] is None, view["sqlite_heap_note"]
    assert view["rss_mb"] > view["sqlite_heap_mb"] >= 0
    assert view["sqlite_heap_peak_mb"] >= view["sqlite_heap_mb"]
    # A bank has opened its store, migrated it and run queries: SQLite holds some heap.
    assert view["sqlite_heap_mb"] > 0
    assert view["gc_objects"] > 1000
    assert view["python_blocks"] > view["gc_objects"] // 10
    assert view["sqlite_cache_cap_mb"] == CACHE_KIB / 1024


def test_the_memory_view_needs_the_admin_token(bank: Bank) -> None:
    with TestClient(create_app(bank, admin_token="s3cret-for-unit-tests")) as c:
        assert c.get("/_admin/memory").status_code == 401
        assert c.get("/_admin/memory", headers={"X-Admin-Token": "s3cret-for-unit-tests"}).status_code == 200


def test_sqlite_heap_grows_with_rows_in_an_in_memory_store() -> None:
    store = Store.open(None)
    try:
        before = sqlite_heap()[0]
        assert before is not None
        store.conn.execute("CREATE TABLE filler (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        rows = 20_000
        with store.transaction():
            store.conn.executemany("INSERT INTO filler (body) VALUES (?)",
                                   ((f"{i:08d}" * 25,) for i in range(rows)))  # 200 bytes each
        after = sqlite_heap()[0]
        assert after is not None
        # An in-memory database lives in SQLite's page cache, so the counter of the live
        # library (not a second copy's) must rise by about the data written: 4 MB.
        assert after[0] - before[0] > rows * 200 // 2
        assert after[1] >= after[0]
    finally:
        store.close()


def test_the_view_counts_python_objects_as_they_are_made() -> None:
    gc.collect()  # else a collection during the loop frees earlier garbage and hides the rise
    before = memory_view().gc_objects
    kept = [[i] for i in range(50_000)]  # lists are tracked by the garbage collector
    gc.collect()
    after = memory_view().gc_objects
    # Other objects come and go meanwhile (the runner's own), so not to the object.
    assert after - before >= len(kept) * 0.9


def test_the_cache_cap_is_read_back_in_either_unit() -> None:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("PRAGMA cache_size=-2048")  # negative: KiB
        assert cache_cap_bytes(conn) == 2048 * 1024
        conn.execute("PRAGMA cache_size=100")  # positive: pages
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        assert cache_cap_bytes(conn) == 100 * page
        assert memory_view(conn).sqlite_cache_cap_mb == round(100 * page / 1024 / 1024, 2)
    finally:
        conn.close()
