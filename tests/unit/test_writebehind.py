"""WriteBehind: store tasks on one other thread, in order; the first failure stops the rest."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from simulator.domain.writebehind import Skipped, WriteBehind
from simulator.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "bank.db")
    s.execute("CREATE TABLE t (n INTEGER)")
    return s


def test_tasks_run_in_order_on_one_other_thread_inside_the_callers_transaction(store: Store) -> None:
    threads: set[int] = set()

    def insert(n: int) -> int:
        threads.add(threading.get_ident())
        store.execute("INSERT INTO t(n) VALUES (?)", (n,))
        return n

    with pytest.raises(LookupError), store.transaction():
        with WriteBehind(depth=2) as writer:
            futures = [writer.submit(lambda n=n: insert(n)) for n in range(50)]  # type: ignore[misc]
            count = writer.submit(lambda: store.scalar("SELECT COUNT(*) FROM t"))
        assert [f.result() for f in futures] == list(range(50))
        assert count.result() == 50  # a read submitted after the inserts sees them all
        assert [r[0] for r in store.all("SELECT n FROM t ORDER BY rowid")] == list(range(50))
        assert threading.get_ident() not in threads and len(threads) == 1
        raise LookupError("roll back")
    assert store.scalar("SELECT COUNT(*) FROM t") == 0  # the worker committed nothing of its own


def test_the_first_failure_skips_the_rest_and_is_raised_when_the_block_ends(store: Store) -> None:
    with pytest.raises(ZeroDivisionError), WriteBehind() as writer:
        writer.submit(lambda: store.execute("INSERT INTO t(n) VALUES (1)"))
        writer.submit(lambda: 1 // 0)
        later = writer.submit(lambda: store.execute("INSERT INTO t(n) VALUES (2)"))
    assert isinstance(later.exception(), Skipped)
    assert [r[0] for r in store.all("SELECT n FROM t")] == [1]


def test_drain_raises_the_failure_and_submit_after_it_does_too(store: Store) -> None:
    with WriteBehind(depth=1) as writer:
        writer.submit(lambda: 1 // 0)
        with pytest.raises(ZeroDivisionError):
            writer.drain()
        writer.submit(lambda: store.execute("INSERT INTO t(n) VALUES (3)"))
        with pytest.raises(Skipped):
            writer.submit(lambda: None)  # waits for the one before it (depth 1): skipped
    assert store.scalar("SELECT COUNT(*) FROM t") == 0


def test_an_error_of_the_caller_skips_what_has_not_started(store: Store) -> None:
    gate = threading.Event()
    with pytest.raises(KeyError), WriteBehind(depth=5) as writer:
        writer.submit(gate.wait)
        queued = writer.submit(lambda: store.execute("INSERT INTO t(n) VALUES (4)"))
        gate.set()
        raise KeyError("the caller's own fault")
    assert queued.cancelled() or isinstance(queued.exception(), Skipped)
    assert store.scalar("SELECT COUNT(*) FROM t") == 0
