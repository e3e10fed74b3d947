"""Idempotency by the platform's request serial.

Every mutating call carries a serial unique per platform. The first answer the bank gives
to a serial (success or a business rejection) is stored in the same transaction as the
change it describes; a retry with the same serial and the same request gets that answer
again, a retry with a different request is a conflict (1020). Retryable answers (system
busy, internal error) are not stored, so the retry is processed for real.

The fingerprint covers the operation and the validated request fields, not the raw bytes,
so key order and whitespace do not make a retry a conflict.

A request costs three statements around its work: the look-up by (platform, serial), then
one savepoint holding the work and its stored answer together.

Example::

    idem = Idempotency(store)
    first = idem.run("demo", "S1", "freeze_account", {"account_no": "1"}, now_us, apply)
    again = idem.run("demo", "S1", "freeze_account", {"account_no": "1"}, now_us, apply)
    assert again.replayed and again.body == first.body
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from simulator.errors import BankError, SerialConflict, SerialNotFound
from simulator.store import Store


class Answer(NamedTuple):
    """The bank's answer: HTTP status and JSON body; ``encoded`` is the body as JSON bytes
    when it is already at hand (the stored copy), so it need not be encoded again."""

    status: int
    body: dict[str, Any]
    replayed: bool = False
    encoded: bytes | None = None


def fingerprint(operation: str, payload: dict[str, Any]) -> str:
    canonical = orjson.dumps([operation, payload], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def error_answer(err: BankError, serial: str | None) -> Answer:
    body = err.as_dict()
    if serial is not None:
        body["request_serial"] = serial
    return Answer(err.entry.http, body)


_INSERT = ("INSERT INTO idempotency(app_id, serial, operation, fingerprint, status_code, "
           "response, created_us) VALUES (?, ?, ?, ?, ?, ?, ?)")


class Idempotency:
    def __init__(self, store: Store) -> None:
        self.store = store

    def run(self, app_id: str, serial: str, operation: str, payload: dict[str, Any],
            now_us: int, apply: Callable[[], dict[str, Any]]) -> Answer:
        """Answer a mutating request exactly once per serial; ``apply`` returns ``data``.

        A new serial: one savepoint holds the effects of ``apply`` and their stored answer
        together; a business rejection rolls the effects back and stores the rejection
        alone, in one statement. Nothing is ever half-applied.
        """
        fp = fingerprint(operation, payload)
        stored = self._stored(app_id, serial, fp)
        if stored is not None:
            return stored
        try:
            with self.store.transaction():
                data = apply()
                answer = Answer(200, {"code": "0000", "message": "success",
                                      "request_serial": serial, "data": data})
                return self._store(app_id, serial, operation, fp, answer, now_us)
        except BankError as err:
            if err.entry.retryable:
                raise
            # The savepoint undid the effects; the rejection is stored on its own.
            return self._store(app_id, serial, operation, fp, error_answer(err, serial), now_us)

    def _store(self, app_id: str, serial: str, operation: str, fp: str, answer: Answer,
               now_us: int) -> Answer:
        """Insert the answer; returns it with its JSON bytes."""
        encoded = orjson.dumps(answer.body)
        self.store.conn.execute(_INSERT, (app_id, serial, operation, fp, answer.status,
                                          encoded.decode(), now_us))
        return Answer(answer.status, answer.body, answer.replayed, encoded)

    def _stored(self, app_id: str, serial: str, fp: str) -> Answer | None:
        """The stored answer as a replay, a conflict (1020) for another request, or None."""
        row = self.store.conn.execute(
            "SELECT operation, fingerprint, status_code, response FROM idempotency "
            "WHERE app_id = ? AND serial = ?", (app_id, serial)).fetchone()
        if row is None:
            return None
        if row[1] != fp:
            return error_answer(SerialConflict(
                f"serial {serial} was used for a different {row[0]} request"), serial)
        response = row[3]
        return Answer(row[2], orjson.loads(response), replayed=True, encoded=response.encode())

    def original(self, app_id: str, serial: str, operation: str) -> Answer:
        """The stored answer of an earlier ``operation`` request with this serial."""
        row = self.store.one(
            "SELECT status_code, response FROM idempotency "
            "WHERE app_id = ? AND serial = ? AND operation = ?", (app_id, serial, operation))
        if row is None:
            raise SerialNotFound(f"no {operation} request with serial {serial}")
        response = row["response"]
        return Answer(row["status_code"], orjson.loads(response), replayed=True,
                      encoded=response.encode())
