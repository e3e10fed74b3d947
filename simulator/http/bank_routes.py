"""The bank's real-time API (contract: ``contracts/bank-api.openapi.yaml``).

Routes are thin: the middleware has already checked the signature and put the platform's
app id in ``request.state``; each route hands the validated body to the Bank and turns
its answer into a response. Routes are ``async`` and call the Bank directly: the Bank is
single-threaded by design and its calls are short, so a thread hop would only add cost.

The hot mutating operations also have a *direct* form (:func:`direct_routes`), which the
middleware calls without FastAPI's per-request machinery (routing, dependency solving,
``Request`` objects): same pydantic schema, same Bank call, same answer. Whatever the
direct form does not accept as valid (a body that fails the schema) goes through the
FastAPI route below, so every error keeps exactly the shape the framework gives it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from simulator.bank import Bank
from simulator.domain.idempotency import Answer
from simulator.http.responses import ERROR_RESPONSES, answer_response
from simulator.http.schemas import (
    SERIAL_PATTERN,
    AccountAnswer,
    AccountWithLimitsAnswer,
    FreezeRequest,
    OpenAccountRequest,
    RefundAnswer,
    RefundRequest,
    SerialRequest,
)

PREFIX = "/api/v1"
AccountNo = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[0-9]+$")]
SerialParam = Annotated[str, Path(pattern=SERIAL_PATTERN)]


# (app id, parsed JSON body) -> the bank's answer, or None: "let the FastAPI route answer".
DirectRoute = Callable[[str, dict[str, Any]], Answer | None]


def direct_routes(bank: Bank) -> dict[str, DirectRoute]:
    """Operation name -> its direct form, for the operations with a fixed path and a body.

    Example::

        routes = direct_routes(bank)
        answer = routes["open_account"]("demo-platform", {"request_serial": "S1", ...})
        answer.body["code"]      # "0000", or the bank's code; None if the body is invalid
    """

    def open_account(app_id: str, fields: dict[str, Any]) -> Answer | None:
        try:
            body = OpenAccountRequest.model_validate(fields)
        except ValidationError:
            return None
        return bank.open_account(app_id, _dump(body))

    def refund(app_id: str, fields: dict[str, Any]) -> Answer | None:
        try:
            body = RefundRequest.model_validate(fields)
        except ValidationError:
            return None
        return bank.refund(app_id, _dump(body))

    return {"open_account": open_account, "refund": refund}


def _dump(body: BaseModel) -> dict[str, Any]:
    # These request models are flat models of str fields: their __dict__ is exactly what
    # model_dump() returns, at a tenth of the cost.
    return dict(body.__dict__)


def _app_id(request: Request) -> str:
    return str(request.state.app_id)


def add_bank_routes(app: FastAPI, bank: Bank) -> None:
    """Register the bank API on ``app`` itself: an included APIRouter is a nested layer in
    FastAPI, matched a second time on every request."""


    @app.post(PREFIX + "/accounts/open", responses=ERROR_RESPONSES,
                 response_model=AccountAnswer, operation_id="open_account",
                 tags=["accounts"], summary="Open a Class III account from the five elements")
    async def open_account(body: OpenAccountRequest, request: Request) -> Response:
        return answer_response(bank.open_account(_app_id(request), body.model_dump()), request)

    @app.get(PREFIX + "/accounts/openings/{request_serial}", responses=ERROR_RESPONSES,
                 response_model=AccountAnswer,
                operation_id="query_opening", tags=["accounts"],
                summary="The answer to an opening request, by its serial")
    async def query_opening(request_serial: SerialParam, request: Request) -> Response:
        return answer_response(bank.query_opening(_app_id(request), request_serial), request)

    @app.get(PREFIX + "/accounts/{account_no}", responses=ERROR_RESPONSES,
                 response_model=AccountWithLimitsAnswer,
                operation_id="query_account", tags=["accounts"],
                summary="Status, balance and remaining limits of an account")
    async def query_account(account_no: AccountNo, request: Request) -> Response:
        return answer_response(bank.query_account(_app_id(request), account_no), request)

    @app.post(PREFIX + "/accounts/{account_no}/freeze", responses=ERROR_RESPONSES,
                 response_model=AccountAnswer,
                 operation_id="freeze_account", tags=["accounts"], summary="Freeze an account")
    async def freeze(account_no: AccountNo, body: FreezeRequest, request: Request) -> Response:
        answer = bank.set_frozen(_app_id(request), account_no, body.model_dump(), True)
        return answer_response(answer, request)

    @app.post(PREFIX + "/accounts/{account_no}/unfreeze", responses=ERROR_RESPONSES,
                 response_model=AccountAnswer,
                 operation_id="unfreeze_account", tags=["accounts"], summary="Unfreeze an account")
    async def unfreeze(account_no: AccountNo, body: FreezeRequest, request: Request) -> Response:
        answer = bank.set_frozen(_app_id(request), account_no, body.model_dump(), False)
        return answer_response(answer, request)

    @app.post(PREFIX + "/accounts/{account_no}/close", responses=ERROR_RESPONSES,
                 response_model=AccountAnswer,
                 operation_id="close_account", tags=["accounts"],
                 summary="Close an account (its balance must be zero)")
    async def close(account_no: AccountNo, body: SerialRequest, request: Request) -> Response:
        return answer_response(bank.close_account(_app_id(request), account_no, body.model_dump()), request)

    @app.post(PREFIX + "/refunds", responses=ERROR_RESPONSES,
                 response_model=RefundAnswer, operation_id="refund", tags=["refunds"],
                 summary="Pay money from a Class III account out to its bound card")
    async def refund(body: RefundRequest, request: Request) -> Response:
        return answer_response(bank.refund(_app_id(request), body.model_dump()), request)

    @app.get(PREFIX + "/refunds/{request_serial}", responses=ERROR_RESPONSES,
                 response_model=RefundAnswer,
                operation_id="query_refund", tags=["refunds"], summary="A refund, by its serial")
    async def query_refund(request_serial: SerialParam, request: Request) -> Response:
        return answer_response(bank.query_refund(_app_id(request), request_serial), request)

