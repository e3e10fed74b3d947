"""Store work on a second thread, in order, while the caller works out what comes next.

The batch engine spends about as long in SQLite (posting the legs, registering serials) as
in its own Python (parsing, deciding). SQLite releases Python's lock while a statement
runs, so the two can overlap on two cores: the engine hands its statements to a
:class:`WriteBehind` and goes on with the next records.

What keeps this exactly as safe as doing it all on one thread:

- one worker thread runs the tasks strictly in the order they were submitted, on the
  store's one connection, inside the caller's open transaction (its savepoint): nothing
  is committed by the worker, so a crash still leaves all or nothing;
- while a ``WriteBehind`` is open the caller does not use the store itself; what it needs
  to read it submits too (a :class:`~concurrent.futures.Future` brings the answer back),
  so every statement still runs in one order on one connection;
- at most ``depth`` tasks wait at a time (memory stays bounded: a task holds a few
  chunks of records);
- the first task that fails stops the rest (they are skipped, none half-runs after it);
  its exception is raised in the caller at the next :meth:`submit`, :meth:`drain` or when
  the block ends. A block that ends with an exception of its own waits for the running
  statement to finish and skips the rest, so the caller's rollback runs on an idle
  connection.

Example::

    with store.transaction(), WriteBehind() as writer:
        rows = writer.submit(lambda: store.all("SELECT ..."))     # a read, in order
        writer.submit(lambda: store.execute("INSERT ...", params))
        rows.result()                                              # wait for an answer
    # here every task has run (or the first failure was raised)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")


class Skipped(Exception):
    """A task that did not run because an earlier one failed."""


class WriteBehind:
    """Runs submitted store tasks on one worker thread, in order; see the module docstring."""

    def __init__(self, depth: int = 3) -> None:
        self._depth = depth
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[Future[object]] = deque()
        self._failed = False

    def __enter__(self) -> WriteBehind:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="banksim-writer")
        return self

    def submit(self, task: Callable[[], T]) -> Future[T]:
        """Queue ``task`` after every task before it; blocks while ``depth`` tasks wait."""
        assert self._pool is not None, "use WriteBehind as a context manager"
        while len(self._pending) >= self._depth:
            self._pending.popleft().result()  # raises the first failure here
        future = self._pool.submit(self._run, task)
        self._pending.append(future)  # type: ignore[arg-type]
        return future

    def drain(self) -> None:
        """Wait until every task submitted so far has run; raises the first failure."""
        while self._pending:
            self._pending.popleft().result()

    def _run(self, task: Callable[[], T]) -> T:
        # The worker runs one task at a time, so this flag needs no lock.
        if self._failed:
            raise Skipped("an earlier store task failed")
        try:
            return task()
        except BaseException:
            self._failed = True
            raise

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        pool, self._pool = self._pool, None
        assert pool is not None
        try:
            if kind is None:
                self.drain()
            else:
                self._failed = True  # skip whatever has not started
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self._pending.clear()
