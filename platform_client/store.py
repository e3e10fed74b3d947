"""The platform's own durable state: one SQLite database (WAL) with versioned migrations.

Every step of the T+1 flow runs in one :meth:`Store.transaction`, so a crash in the middle
of a step leaves the store as it was before the step and the step can simply be run again.
``PRAGMA user_version`` holds the schema version (the number of migrations applied).

Example::

    >>> store = Store.open(None)
    >>> with store.transaction():
    ...     _ = store.execute("INSERT INTO meta(key, value) VALUES ('k', 'v')")
    >>> store.one("SELECT value FROM meta WHERE key = 'k'")["value"]
    'v'
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from platform_client.schema import MIGRATIONS

CHECKPOINT_PAGES = 16_384  # 64 MiB of WAL between checkpoints
CACHE_KIB = 64 * 1024


class Store:
    """A SQLite connection with migrations and nestable (savepoint) transactions."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._depth = 0
        # The notify server thread and the CLI thread share the connection.
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: str | Path | None) -> Store:
        """Open (create and migrate) the database at ``path``; None = in memory."""
        target = ":memory:"
        if path is not None and str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            target = str(path)
        conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        if target != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
            # A checkpoint fsyncs the database file (milliseconds) inside the COMMIT that
            # triggers it; at SQLite's default of 1000 WAL pages that came every hundred or
            # so small steps and cost more than the steps. Commits themselves never fsync in
            # WAL with synchronous=NORMAL (durable against a killed process).
            conn.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
        conn.execute("PRAGMA synchronous=NORMAL")
        # The page cache (SQLite's default: 2 MiB) must hold what one step dirties: a step
        # over a whole day (reconciliation, a batch and its return: thousands of rows) that
        # outgrew it spilled pages to the WAL mid-transaction and rewrote them at every
        # later change. Memory grows only as pages are used.
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=10000")
        store = cls(conn)
        store._migrate()
        return store

    def _migrate(self) -> None:
        version = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
        if version > len(MIGRATIONS):
            raise RuntimeError(f"store schema {version} is newer than this client ({len(MIGRATIONS)})")
        for number, sql in enumerate(MIGRATIONS[version:], start=version + 1):
            # executescript commits first; the version bump is inside the script's transaction.
            self.conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {number};\nCOMMIT;")

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing; nested calls are savepoints inside the outer transaction."""
        with self._lock:
            depth = self._depth
            name = f"sp{depth}"
            self.conn.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if depth == 0:
                    self.conn.execute("ROLLBACK")
                else:
                    self.conn.execute(f"ROLLBACK TO {name}")
                    self.conn.execute(f"RELEASE {name}")
                raise
            self._depth -= 1
            self.conn.execute("COMMIT" if depth == 0 else f"RELEASE {name}")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self.conn.execute(sql, params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self.conn.execute(sql, params).fetchone()
            return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self.conn.execute(sql, params).fetchall())

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.one(sql, params)
        return None if row is None else row[0]

    def next_value(self, key: str, start: int) -> int:
        """The next number of a persistent sequence (call inside a transaction)."""
        current = self.scalar("SELECT value FROM meta WHERE key = ?", (key,))
        value = start if current is None else int(current) + 1
        self.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                     "SET value = excluded.value", (key, str(value)))
        return value

    def close(self) -> None:
        with self._lock:
            self.conn.close()
