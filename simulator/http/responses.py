"""Turning the bank's answers and errors into HTTP responses."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from simulator.domain.idempotency import Answer
from simulator.errors import (
    BankError,
    BodyTooLarge,
    MalformedRequest,
    MethodNotAllowed,
    NotFound,
)
from simulator.http.schemas import ErrorAnswer

ERROR_STATUSES = (400, 401, 404, 409, 413, 422, 500, 503)
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorAnswer, "description": "an error from the bank's code table"}
    for status in ERROR_STATUSES
}


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status,
                    media_type="application/json", headers=headers)


def answer_response(answer: Answer, request: Request | None = None) -> Response:
    # Tells a platform that this is the stored answer to an earlier request, not a new one.
    headers = {"X-Idempotent-Replay": "true"} if answer.replayed else None
    if request is not None:
        _note_code(request, str(answer.body.get("code")))
    return Response(answer.encoded or orjson.dumps(answer.body), status_code=answer.status,
                    media_type="application/json", headers=headers)


def _note_code(request: Request, code: str) -> None:
    # Read by the middleware for the request's timeline entry.
    request.state.bank_code = code


async def bank_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BankError)
    _note_code(request, exc.code)
    return json_response(exc.entry.http, exc.as_dict())


_HTTP_STATUS_ERRORS: dict[int, type[BankError]] = {
    400: MalformedRequest, 404: NotFound, 405: MethodNotAllowed, 413: BodyTooLarge,
}


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """The framework's own errors (unparseable body, no route, wrong method) in the bank's shape."""
    assert isinstance(exc, StarletteHTTPException)
    cls = _HTTP_STATUS_ERRORS.get(exc.status_code)
    if cls is None:
        _note_code(request, "9000")
        return json_response(exc.status_code, {"code": "9000", "message": str(exc.detail)})
    err = cls(str(exc.detail))
    _note_code(request, err.code)
    return json_response(exc.status_code, err.as_dict(), dict(exc.headers or {}))


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc'] if p != 'body') or 'body'}: {err['msg']}"
        for err in exc.errors()
    )
    err = MalformedRequest(problems[:1000])
    _note_code(request, err.code)
    return json_response(err.entry.http, err.as_dict())
