"""Idempotency by the platform's request serial.

Every mutating call carries a serial unique per platform. The first answer the bank gives
to a serial (success or a business rejection) is stored in the same transaction as the
change it describes; a retry with the same serial and the same request gets that answer
again, a retry with a different request is a conflict (1020). Retryable answers (system
busy, internal error) are not stored, so the retry is processed for real.

The fingerprint covers the operation and the validated request fields, not the raw bytes,
so key order and whitespace do not make a retry a conflict.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from simulator.errors import BankError, SerialConflict, SerialNotFound
from simulator.store import Store


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    replayed: bool = False


def fingerprint(operation: str, payload: dict[str, Any]) -> str:
    canonical = orjson.dumps([operation, payload], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def error_answer(err: BankError, serial: str | None) -> Answer:
    body = err.as_dict()
    if serial is not None:
        body["request_serial"] = serial
    return Answer(err.entry.http, body)


class Idempotency:
    def __init__(self, store: Store) -> None:
        self.store = store

    def run(self, app_id: str, serial: str, operation: str, payload: dict[str, Any],
            now_us: int, apply: Callable[[], dict[str, Any]]) -> Answer:
        """Answer a mutating request exactly once per serial; ``apply`` returns ``data``."""
        fp = fingerprint(operation, payload)
        with self.store.transaction():
            row = self.store.one(
                "SELECT operation, fingerprint, status_code, response FROM idempotency "
                "WHERE app_id = ? AND serial = ?", (app_id, serial))
            if row is not None:
                if row["fingerprint"] != fp:
                    return error_answer(SerialConflict(
                        f"serial {serial} was used for a different {row['operation']} request"),
                        serial)
                return Answer(row["status_code"], orjson.loads(row["response"]), replayed=True)
            try:
                # A savepoint: a business rejection rolls back its partial effects while
                # the rejection itself is still stored below.
                with self.store.transaction():
                    data = apply()
                answer = Answer(200, {"code": "0000", "message": "success",
                                      "request_serial": serial, "data": data})
            except BankError as err:
                if err.entry.retryable:
                    raise
                answer = error_answer(err, serial)
            self.store.execute(
                "INSERT INTO idempotency(app_id, serial, operation, fingerprint, status_code, "
                "response, created_us) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (app_id, serial, operation, fp, answer.status,
                 orjson.dumps(answer.body).decode(), now_us))
            return answer

    def original(self, app_id: str, serial: str, operation: str) -> Answer:
        """The stored answer of an earlier ``operation`` request with this serial."""
        row = self.store.one(
            "SELECT status_code, response FROM idempotency "
            "WHERE app_id = ? AND serial = ? AND operation = ?", (app_id, serial, operation))
        if row is None:
            raise SerialNotFound(f"no {operation} request with serial {serial}")
        return Answer(row["status_code"], orjson.loads(row["response"]), replayed=True)
