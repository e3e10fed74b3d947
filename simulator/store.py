"""The bank's durable state: one SQLite database in WAL mode under a state directory.

Why SQLite in WAL mode with ``synchronous=NORMAL``: every commit is durable against a
process crash (SIGKILL) because the WAL is written before ``COMMIT`` returns; only an
operating-system crash or power loss can lose the last transactions. That is the
durability a simulator needs, at a few tens of microseconds per commit.

All access happens on one thread (the server's event loop), so one connection is shared.
Money moves only inside :meth:`Store.transaction`; nested calls become savepoints, so a
job handler that calls a service that opens its own transaction is still all-or-nothing.

Example::

    store = Store.open(Path("state/bank.db"))
    with store.transaction():
        store.execute("INSERT INTO kv(key, value) VALUES (?, ?)", ("k", "v"))
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

DB_FILENAME = "bank.db"


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

    @classmethod
    def open(cls, path: Path | None) -> Store:
        """Open (creating and migrating) the database at ``path``; ``None`` means in memory."""
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so Python's sqlite3
        # never opens implicit transactions behind our back.
        conn = sqlite3.connect(
            str(path) if path else ":memory:", isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        if path is not None:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
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

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All-or-nothing block; nested blocks are savepoints inside the outer one."""
        if self._depth == 0:
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.conn.execute(f"SAVEPOINT sp{self._depth}")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self.conn.execute("ROLLBACK")
            else:
                self.conn.execute(f"ROLLBACK TO sp{self._depth}")
                self.conn.execute(f"RELEASE sp{self._depth}")
            raise
        else:
            self._depth -= 1
            if self._depth == 0:
                self.conn.execute("COMMIT")
            else:
                self.conn.execute(f"RELEASE sp{self._depth}")

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

    def get_kv(self, key: str) -> str | None:
        value = self.scalar("SELECT value FROM kv WHERE key = ?", (key,))
        return None if value is None else str(value)

    def set_kv(self, key: str, value: str) -> None:
        self.execute(
            "INSERT INTO kv(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def close(self) -> None:
        self.conn.close()
