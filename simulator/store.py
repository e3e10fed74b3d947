"""The bank's durable state: one SQLite database in WAL mode under a state directory.

Why SQLite in WAL mode with ``synchronous=NORMAL``: every commit is durable against a
process crash (SIGKILL) because the WAL is written before ``COMMIT`` returns; only an
operating-system crash or power loss can lose the last transactions. That is the
durability a simulator needs, at a few tens of microseconds per commit.

All access happens on one thread (the server's event loop), so one connection is shared.
Money moves only inside :meth:`Store.transaction`; nested calls become savepoints, so a
job handler that calls a service that opens its own transaction is still all-or-nothing.

Group commit (``group_commit = True``, what the server uses): an outermost transaction
becomes a savepoint inside one long transaction, and :meth:`Store.flush` commits them
all at once. Each block is still all-or-nothing (its savepoint), but the pages a burst of
requests dirties are written to the WAL once instead of once per request. The server
flushes before it sends any response, so no answer ever reports work that a crash could
still lose.

Example::

    store = Store.open(Path("state/bank.db"))
    with store.transaction():
        store.execute("INSERT INTO kv(key, value) VALUES (?, ?)", ("k", "v"))
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from importlib import resources
from itertools import chain
from pathlib import Path
from types import TracebackType
from typing import Any

DB_FILENAME = "bank.db"
CACHE_KIB = 96 * 1024
STATEMENT_CACHE = 512
# Savepoint statements for the usual depths, built once.
_NAMED = 8
_SAVEPOINT = tuple(f"SAVEPOINT sp{d}" for d in range(_NAMED))
_RELEASE = tuple(f"RELEASE sp{d}" for d in range(_NAMED))


def _migrations() -> list[tuple[int, str]]:
    """Numbered ``NNNN_name.sql`` files shipped in ``simulator/migrations``, in order."""
    found = []
    for entry in resources.files("simulator.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..N without gaps, found {versions}")
    return found


class Store:
    """A SQLite connection with versioned migrations and nestable transactions."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None) -> None:
        self.conn = conn
        self.path = path
        self._depth = 0
        self.group_commit = False
        self._batch_open = False
        self._checkpointer: _Checkpointer | None = None
        # Counts rollbacks (of blocks and of failed group commits): a value cached in
        # memory from a write is still the stored one while this has not moved.
        self.rollbacks = 0

    @classmethod
    def open(cls, path: Path | None) -> Store:
        """Open (creating and migrating) the database at ``path``; ``None`` means in memory."""
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so Python's sqlite3
        # never opens implicit transactions behind our back.
        # A statement cache larger than the default 128: the batch engine's multi-row
        # INSERTs come in many sizes, and each one evicting a request's statement would
        # make the next request prepare it again.
        conn = sqlite3.connect(
            str(path) if path else ":memory:", isolation_level=None, check_same_thread=False,
            cached_statements=STATEMENT_CACHE,
        )
        conn.row_factory = sqlite3.Row
        if path is not None:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        # A page cache big enough for a large batch's transaction (the default is 2 MiB):
        # when a transaction dirties more pages than the cache holds, SQLite spills them to
        # the WAL and writes them again at every later change, which made bulk posting
        # several times slower. Memory grows only as pages are used.
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        store = cls(conn, path)
        store.migrate()
        return store

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> int:
        """Apply every migration newer than the database; returns the resulting version."""
        current = self.schema_version
        for version, sql in _migrations():
            if version <= current:
                continue
            # executescript commits first, so the script and the version bump run in
            # one explicit transaction of their own.
            self.conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version={version};\nCOMMIT;")
            current = version
        return current

    def transaction(self) -> _Transaction:
        """All-or-nothing block; nested blocks are savepoints inside the outer one.

        Use as ``with store.transaction(): ...``; an exception rolls the block back and
        propagates.
        """
        return _Transaction(self)

    def _begin(self) -> bool:
        """Enter a block; True when it is an outermost block of its own (BEGIN/COMMIT)."""
        # A plain BEGIN/COMMIT only for an outermost block without group commit;
        # everything else is a savepoint (inside the open group transaction if any).
        depth = self._depth
        own = depth == 0 and not self.group_commit
        execute = self.conn.execute
        if own:
            execute("BEGIN IMMEDIATE")
        else:
            if depth == 0 and not self._batch_open:
                execute("BEGIN IMMEDIATE")
                self._batch_open = True
            execute(_SAVEPOINT[depth] if depth < _NAMED else f"SAVEPOINT sp{depth}")
        self._depth = depth + 1
        return own

    def _end(self, own: bool, failed: bool) -> None:
        depth = self._depth = self._depth - 1
        execute = self.conn.execute
        if failed:
            self.rollbacks += 1
            if own:
                execute("ROLLBACK")
            else:
                execute(f"ROLLBACK TO sp{depth}")
                execute(f"RELEASE sp{depth}")
        else:
            execute("COMMIT" if own else
                    _RELEASE[depth] if depth < _NAMED else f"RELEASE sp{depth}")

    def flush(self) -> None:
        """Commit the group transaction, if one is open (no-op without group commit)."""
        if self._batch_open and self._depth == 0:
            try:
                self.conn.execute("COMMIT")
            except BaseException:
                # Whatever SQLite kept or undid, cached values must be read again.
                self.rollbacks += 1
                raise
            self._batch_open = False

    @property
    def has_unflushed(self) -> bool:
        return self._batch_open

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return list(self.conn.execute(sql, params).fetchall())

    def scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def insert_rows(self, head: str, rows: Sequence[Sequence[Any]], per_statement: int = 256) -> int:
        """Insert many rows with multi-row ``VALUES`` lists; returns the rows inserted.

        ``head`` is the statement up to ``VALUES`` (``INSERT [OR IGNORE] INTO t(a, b)``).
        One statement per ``per_statement`` rows instead of one per row: the per-statement
        work (binding calls, the AUTOINCREMENT counter, constraint set-up) is paid once per
        group, which roughly halves the cost of a bulk insert.

            store.insert_rows("INSERT INTO kv(key, value)", [("a", "1"), ("b", "2")])
        """
        n = len(rows)
        if n == 0:
            return 0
        width = len(rows[0])
        marks = "(" + ", ".join("?" * width) + ")"
        before = self.conn.total_changes
        whole = n - n % per_statement
        if whole:
            sql = f"{head} VALUES {', '.join([marks] * per_statement)}"
            for i in range(0, whole, per_statement):
                self.conn.execute(sql, list(chain.from_iterable(rows[i:i + per_statement])))
        if whole < n:
            self.conn.execute(f"{head} VALUES {', '.join([marks] * (n - whole))}",
                              list(chain.from_iterable(rows[whole:])))
        return self.conn.total_changes - before

    def get_kv(self, key: str) -> str | None:
        value = self.scalar("SELECT value FROM kv WHERE key = ?", (key,))
        return None if value is None else str(value)

    def set_kv(self, key: str, value: str) -> None:
        self.execute(
            "INSERT INTO kv(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def start_checkpointer(self, interval: float = 0.25) -> None:
        """Checkpoint the WAL from a background thread instead of inside COMMIT.

        A checkpoint copies the WAL into the database and fsyncs, which takes
        milliseconds; done inside COMMIT (SQLite's default) it stalls the event loop
        and every request waiting on it.
        """
        if self.path is None or self._checkpointer is not None:
            return
        self.conn.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer = _Checkpointer(self.path, interval)
        self._checkpointer.start()

    def close(self) -> None:
        self.flush()
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self.conn.close()


class _Transaction:
    """One ``with store.transaction():`` block (a class, not a generator: it is entered
    several times per request)."""

    __slots__ = ("_own", "_store")

    def __init__(self, store: Store) -> None:
        self._store = store
        self._own = False

    def __enter__(self) -> None:
        self._own = self._store._begin()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._store._end(self._own, exc_type is not None)


class _Checkpointer(threading.Thread):
    def __init__(self, path: Path, interval: float) -> None:
        super().__init__(name="banksim-checkpointer", daemon=True)
        self.path = path
        self.interval = interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            while not self._stop_event.wait(self.interval):
                # PASSIVE never blocks the writer; whatever it cannot copy now waits for
                # the next round.
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
