"""The bank's real-time API (contract: ``contracts/bank-api.openapi.yaml``).

Routes are thin: the middleware has already checked the signature and put the platform's
app id in ``request.state``; each route hands the validated body to the Bank and turns
its answer into a response. Routes are ``async`` and call the Bank directly: the Bank is
single-threaded by design and its calls are short, so a thread hop would only add cost.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Path, Request
from fastapi.responses import Response

from simulator.bank import Bank
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

