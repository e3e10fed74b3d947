"""The ASGI application: the bank API, ``/health`` and the control API on one server."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.telemetry import TelemetryConfig
from starlette.exceptions import HTTPException as StarletteHTTPException

from simulator.bank import Bank
from simulator.errors import BankError
from simulator.http.admin_routes import build_admin_app
from simulator.http.bank_routes import add_bank_routes
from simulator.http.guard import RequestGuard, check_admin_token
from simulator.http.middleware import BankApiMiddleware
from simulator.http.responses import (
    bank_error_handler,
    http_error_handler,
    validation_error_handler,
)
from simulator.http.signing import SignatureVerifier
from simulator.http.wechat_routes import PREFIX as WECHAT_PREFIX
from simulator.http.wechat_routes import ROOT_PREFIX as WECHAT_ROOT_PREFIX
from simulator.http.wechat_routes import build_wechat_api
from simulator.wechat.dispatcher import Dispatcher

TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
API_TITLE = "banksim bank API"
API_VERSION = "1.0.0"
API_DESCRIPTION = (
    "Real-time API of the simulated Shanghai partner bank: Class III account opening, "
    "account queries, freeze/unfreeze/close and refunds to the bound card. Every request "
    "is signed (see contracts/signing.py); every mutating request carries the platform's "
    "request serial and is idempotent by it. Money is a yuan string with two decimals."
)


def create_app(bank: Bank, *, admin_token: str | None = None,
               verifier: SignatureVerifier | None = None,
               bind_host: str | None = None) -> FastAPI:
    """``bind_host``: where the server listens (a loopback address turns the ``Host`` check
    of :mod:`simulator.http.guard` on); None for an app served in process.
    Raises ValueError for an admin token shorter than the minimum."""
    check_admin_token(admin_token)
    # No trailing-slash redirects: a platform gets a coded 404, not a 307 to follow.
    # FastAPI's native OpenTelemetry is off: the simulator exports no telemetry, and
    # asking the OpenTelemetry API whether a provider is configured cost every request
    # several microseconds.
    app = FastAPI(title=API_TITLE, version=API_VERSION, description=API_DESCRIPTION,
                  redirect_slashes=False, telemetry=TELEMETRY_OFF)
    app.add_exception_handler(BankError, bank_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    add_bank_routes(app, bank)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, Any]:
        return {"status": "ok", "bank": bank.profile.bank.name,
                "clock": bank.clock.now().isoformat()}

    # The WeChat Pay channel's sender of notifications: drained by the control API after
    # clock moves, and by the server's background task in realtime/accelerated modes.
    dispatcher = Dispatcher(bank)
    app.state.wechat_dispatcher = dispatcher
    # WeChat Pay's own paths (/v3/...), so an SDK needs only its base URL changed, and the
    # same app (one nonce memory) under the historical /wechat/v3 prefix.
    wechat_api = build_wechat_api(bank)
    app.mount(WECHAT_PREFIX, wechat_api)
    app.mount(WECHAT_ROOT_PREFIX, wechat_api)
    app.mount("/_admin", build_admin_app(bank, admin_token, dispatcher))
    app.add_middleware(BankApiMiddleware, bank=bank, verifier=verifier or SignatureVerifier())
    # Added last, so outermost: nothing reads a body before it has passed.
    app.add_middleware(RequestGuard, bank=bank, admin_token=admin_token, bind_host=bind_host)
    return app
