"""Turning the bank's answers and errors into HTTP responses."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from simulator.domain.idempotency import Answer
from simulator.errors import BankError, MalformedRequest
from simulator.http.schemas import ErrorAnswer

ERROR_STATUSES = (400, 401, 404, 409, 413, 422, 500, 503)
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorAnswer, "description": "an error from the bank's code table"}
    for status in ERROR_STATUSES
}


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status_code=status,
                    media_type="application/json", headers=headers)


def answer_response(answer: Answer) -> Response:
    # Tells a platform that this is the stored answer to an earlier request, not a new one.
    headers = {"X-Idempotent-Replay": "true"} if answer.replayed else None
    return json_response(answer.status, answer.body, headers)


async def bank_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BankError)
    return json_response(exc.entry.http, exc.as_dict())


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc'] if p != 'body') or 'body'}: {err['msg']}"
        for err in exc.errors()
    )
    err = MalformedRequest(problems[:1000])
    return json_response(err.entry.http, err.as_dict())
