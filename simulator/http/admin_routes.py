"""The control API under ``/_admin``: scenario set-up and inspection, not the bank contract.

Tests and operators drive the simulator through it: reset, the virtual clock, the profile,
accounts, the ledger invariants, the event timeline and the scheduler's jobs. When the
server has an admin token, every call needs ``X-Admin-Token``.
"""

from __future__ import annotations

import hmac
import re
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from simulator.bank import Bank
from simulator.clock import parse_datetime, parse_duration
from simulator.config import ProfileError
from simulator.errors import (
    AdminTokenRequired,
    BankError,
    FileTooLarge,
    MalformedRequest,
    NotFound,
)
from simulator.events import EventFilter, count_events
from simulator.http.asgi import replaying
from simulator.http.responses import (
    bank_error_handler,
    http_error_handler,
    json_response,
    validation_error_handler,
)
from simulator.memory import memory_view
from simulator.wechat.dispatcher import Dispatcher
from simulator.wechat.errors import WechatError


class AdvanceRequest(BaseModel):
    by: str | None = Field(default=None, description="a duration: 90s, 20m, 1h30m, 1d, PT20M")
    to: str | None = Field(default=None, description="an ISO date-time (CST if no offset)")


class NextBusinessDayRequest(BaseModel):
    at: str | None = Field(default=None, description="HH:MM on the next business day; "
                           "default: the cutover instant itself")


class ModeRequest(BaseModel):
    mode: str = Field(description="manual | realtime | accelerated:N")


class FreezeRequest(BaseModel):
    reason: str = ""


class AgreementRequest(BaseModel):
    active: bool


class DepositRequest(BaseModel):
    amount: str = Field(description="yuan with two decimals")
    memo: str = ""


class WechatPayRequest(BaseModel):
    openid: str | None = Field(default=None, min_length=1, max_length=128)
    bank_type: str = Field(default="OTHERS", pattern=r"^[A-Z0-9_]{1,32}$")


class WechatRefundRequest(BaseModel):
    amount: str = Field(description="yuan with two decimals")
    out_refund_no: str | None = Field(default=None, pattern=r"^[0-9A-Za-z_|*@-]{1,64}$")


def build_admin_app(bank: Bank, token: str | None, dispatcher: Dispatcher | None = None) -> FastAPI:
    # async: FastAPI runs a plain-def dependency in its thread pool, a thread hop on every
    # control call for a check that never blocks.
    async def require_token(x_admin_token: Annotated[str | None, Header()] = None) -> None:
        if token is not None and not (x_admin_token and hmac.compare_digest(x_admin_token, token)):
            raise AdminTokenRequired()

    admin = FastAPI(title="banksim control API", dependencies=[Depends(require_token)],
                    description=__doc__)
    admin.add_exception_handler(BankError, bank_error_handler)
    admin.add_exception_handler(RequestValidationError, validation_error_handler)
    admin.add_exception_handler(StarletteHTTPException, http_error_handler)
    admin.add_exception_handler(WechatError, _wechat_error)
    sender = dispatcher or Dispatcher(bank)

    def _profile_error(exc: ProfileError) -> MalformedRequest:
        return MalformedRequest(str(exc))

    @admin.post("/reset", summary="Forget all state; clock back to the profile's start")
    async def reset() -> dict[str, Any]:
        bank.reset()
        return {"ok": True, "clock": bank.clock_view()}

    @admin.get("/clock")
    async def clock() -> dict[str, Any]:
        return bank.clock_view()

    async def advance_to(target: datetime) -> list[dict[str, Any]]:
        """The clock to ``target``, every job due on the way run in order; a batch is
        processed a slice at a time, with other requests answered between slices (the
        answer waits for the whole advance)."""
        scheduler = bank.scheduler
        jobs: list[dict[str, Any]] = []
        while True:
            # Up to the next batch job, then that batch to its end, yielding between slices.
            sliced = scheduler.next_sliced_due(target)
            step = target if sliced is None else max(sliced, bank.clock.now())
            jobs += await sender.advance_to(step)
            jobs += [{"id": j.id, "kind": j.kind, "due_at": j.due_at.isoformat()}
                     for j in await scheduler.finish_in_progress(bank.flush)]
            if sliced is None and bank.clock.now() >= target:
                return jobs

    @admin.post("/clock/advance", summary="Move the clock forward, running due jobs in order")
    async def advance(body: AdvanceRequest) -> dict[str, Any]:
        if (body.by is None) == (body.to is None):
            raise MalformedRequest("give exactly one of 'by' and 'to'")
        try:
            target = (bank.clock.now() + parse_duration(body.by) if body.by is not None
                      else parse_datetime(str(body.to)))
        except ValueError as exc:
            raise MalformedRequest(str(exc)) from None
        if target < bank.clock.now():
            raise MalformedRequest("the clock never moves backwards")
        # Notifications due on the way are sent at their times, before the answer.
        jobs = await advance_to(target)
        return {"clock": bank.clock_view(), "jobs_run": jobs}

    @admin.post("/clock/next-business-day",
                summary="Advance to the next day cutover, or to a time on the next business day")
    async def next_business_day(body: NextBusinessDayRequest | None = None) -> dict[str, Any]:
        target = bank.clock.next_cutover()
        if body is not None and body.at:
            try:
                hh, mm = (int(x) for x in body.at.split(":"))
                moment = target.replace(hour=hh, minute=mm, second=0, microsecond=0)
            except ValueError:
                raise MalformedRequest("'at' must be HH:MM") from None
            while bank.clock.business_date(moment) < bank.clock.business_date(target):
                moment += timedelta(days=1)
            target = moment if moment >= target else moment + timedelta(days=1)
        jobs = await advance_to(target)
        return {"clock": bank.clock_view(), "jobs_run": jobs}

    @admin.put("/clock/mode")
    async def set_mode(body: ModeRequest) -> dict[str, Any]:
        try:
            bank.set_clock_mode(body.mode)
        except (ValueError, ProfileError) as exc:
            raise MalformedRequest(str(exc)) from None
        return bank.clock_view()

    @admin.get("/jobs")
    async def jobs() -> list[dict[str, Any]]:
        return [{"id": j.id, "kind": j.kind, "due_at": j.due_at.isoformat(),
                 "payload": j.payload, "state": j.state} for j in bank.scheduler.pending()]

    @admin.get("/profile")
    async def get_profile() -> dict[str, Any]:
        return bank.profile.as_dict()

    @admin.put("/profile", summary="Replace the whole profile (validated)")
    async def put_profile(body: dict[str, Any]) -> dict[str, Any]:
        try:
            return bank.replace_profile(body).as_dict()
        except ProfileError as exc:
            raise _profile_error(exc) from None

    @admin.patch("/profile", summary="Change part of the profile (JSON merge patch)")
    async def patch_profile(body: dict[str, Any]) -> dict[str, Any]:
        try:
            return bank.patch_profile(body).as_dict()
        except ProfileError as exc:
            raise _profile_error(exc) from None

    @admin.get("/accounts")
    async def accounts(kind: str | None = None, app_id: str | None = None,
                       limit: Annotated[int, Query(ge=1, le=10_000)] = 500) -> list[dict[str, Any]]:
        return bank.accounts.list(kind=kind, app_id=app_id, limit=limit)

    @admin.get("/accounts/{account_no}")
    async def account(account_no: str) -> dict[str, Any]:
        return bank.account_detail(account_no)

    @admin.post("/accounts/{account_no}/freeze")
    async def freeze(account_no: str, body: FreezeRequest | None = None) -> dict[str, Any]:
        return bank.admin_set_frozen(account_no, True, body.reason if body else "")

    @admin.post("/accounts/{account_no}/unfreeze")
    async def unfreeze(account_no: str) -> dict[str, Any]:
        return bank.admin_set_frozen(account_no, False)

    @admin.post("/accounts/{account_no}/activate",
                summary="Approve the account's ID-card images by hand: PENDING_IMAGES -> ACTIVE")
    async def activate(account_no: str) -> dict[str, Any]:
        return bank.admin_activate(account_no)

    @admin.post("/accounts/{account_no}/deposit",
                summary="Money from outside the bank into an account (scenario set-up)")
    async def deposit(account_no: str, body: DepositRequest) -> dict[str, Any]:
        return bank.deposit(account_no, body.amount, body.memo)

    @admin.post("/accounts/{account_no}/agreement",
                summary="Grant or revoke the account's withholding agreement (代扣协议)")
    async def agreement(account_no: str, body: AgreementRequest) -> dict[str, Any]:
        return bank.set_agreement(account_no, body.active)

    @admin.get("/batches", summary="Batches and their states")
    async def batches(app_id: str | None = None) -> list[dict[str, Any]]:
        return bank.files.batches(app_id)

    @admin.get("/batches/{app_id}/{batch_no}",
                summary="The expected-outcome manifest: every record's result and why")
    async def manifest(app_id: str, batch_no: str) -> dict[str, Any]:
        return bank.files.manifest(app_id, batch_no)

    @admin.post("/batches/{app_id}/{batch_no}/process", summary="Process the batch now")
    async def force_process(app_id: str, batch_no: str) -> dict[str, Any]:
        ran = bank.files.force(app_id, batch_no, "process")
        # A large batch goes on a slice at a time; the answer comes when it is processed.
        ran += [{"id": j.id, "kind": j.kind} for j in await bank.scheduler.finish_in_progress(bank.flush)]
        return {"jobs_run": ran}

    @admin.post("/batches/{app_id}/{batch_no}/return", summary="Write the return file now")
    async def force_return(app_id: str, batch_no: str) -> dict[str, Any]:
        return {"jobs_run": bank.files.force(app_id, batch_no, "return")}

    @admin.get("/rejections", summary="Files refused as a whole, with their rejection files")
    async def rejections(app_id: str | None = None) -> list[dict[str, Any]]:
        return bank.files.rejections(app_id)

    @admin.get("/files/{app_id}", summary="The platform's SFTP tree: files by area")
    async def files(app_id: str) -> dict[str, Any]:
        if bank.profile.platform(app_id) is None:
            raise NotFound(f"no platform {app_id}")
        return bank.outbox.listing(app_id)

    @admin.post("/files/{app_id}/{area}/{name}",
                summary="Hand a file to the bank as if uploaded over SFTP (body: the bytes)")
    async def upload(app_id: str, area: str, name: str, request: Request) -> dict[str, Any]:
        if area not in ("images", "batches") or "/" in name or name.startswith("."):
            raise MalformedRequest("area must be images or batches, name a plain file name")
        if bank.profile.platform(app_id) is None:
            raise NotFound(f"no platform {app_id}")
        target = bank.outbox.jail(app_id) / "upload" / area / name
        if target.exists():
            raise MalformedRequest(f"{area}/{name} was already uploaded")
        limit = bank.profile.sftp.max_upload_bytes
        size = 0
        # Streamed to disk under a temp name, like an SFTP upload: never held in memory.
        partial = target.with_name(f".{name}.part")
        with open(partial, "wb") as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    fh.close()
                    partial.unlink()
                    raise FileTooLarge(f"upload exceeds {limit} bytes")
                fh.write(chunk)
        partial.rename(target)
        return bank.file_complete(app_id, area, name, target)

    @admin.get("/invariants")
    async def invariants() -> dict[str, Any]:
        violations = bank.invariants()
        return {"ok": not violations, "violations": [v.as_dict() for v in violations]}

    @admin.get("/events", summary="The timeline; X-Events-More: matching events not in this page")
    async def events(response: Response, since_id: int = 0, kind: str | None = None,
                     account: str | None = None, serial: str | None = None,
                     batch: Annotated[int | None, Query(ge=0)] = None, order: str | None = None,
                     newest: bool = False,
                     limit: Annotated[int, Query(ge=1, le=10_000)] = 500) -> list[dict[str, Any]]:
        where = EventFilter(since_id=since_id, kind=kind, account=account, serial=serial,
                            batch=batch, order=order)
        rows = bank.events(where=where, limit=limit, newest=newest)
        response.headers["X-Events-More"] = str(count_events(bank.store, where) - len(rows))
        return rows

    @admin.get("/memory", summary="Process memory: RSS, SQLite's heap and cache cap, Python objects")
    async def memory() -> dict[str, Any]:
        # Counting gc objects walks them all (O(n)): fine on demand, not for polling hard.
        return memory_view(bank.store.conn).as_dict()

    add_wechat_admin_routes(admin, bank, sender, token=token)
    return admin


async def _wechat_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WechatError)
    return json_response(exc.status, exc.as_dict())


# At module level: with postponed annotations FastAPI resolves parameter types from the
# module's globals, and a local alias breaks the generated OpenAPI document.
Mchid = Annotated[str | None, Query(description="only needed when several merchants share the out_trade_no")]


_PAY_PATH = re.compile(r"/wechat/orders/([^/]+)/pay")


class DirectPay:
    """``POST /wechat/orders/{out_trade_no}/pay`` without FastAPI's routing and dependency
    machinery: load tests pay orders by the thousand, and the framework cost more than
    the payment. Same token check, same body model, same channel call, same answer.
    Whatever is not plainly valid here (another route, a query string, a wrong token, a
    body the model refuses) goes on to FastAPI, so every error keeps the framework's shape.
    """

    def __init__(self, app: ASGIApp, bank: Bank, token: str | None) -> None:
        self.app = app
        self.bank = bank
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = None
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("query_string"):
            match = _PAY_PATH.fullmatch(_route_path(scope))
        if match is None or not self._token_ok(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        options = _pay_options(scope, body)
        if options is None:
            await self.app(scope, replaying(body, receive), send)
            return
        try:
            answer = self.bank.wechat.pay(match[1], openid=options.openid,
                                          bank_type=options.bank_type)
        except WechatError as err:
            response = json_response(err.status, err.as_dict())
        else:
            response = json_response(200, answer)
        await response(scope, receive, send)

    def _token_ok(self, scope: Scope) -> bool:
        if self.token is None:
            return True
        given = next((v for k, v in scope["headers"] if k == b"x-admin-token"), None)
        return given is not None and hmac.compare_digest(given, self.token.encode())


def _pay_options(scope: Scope, body: bytes) -> WechatPayRequest | None:
    """The pay body as FastAPI would read it; None when only FastAPI should answer it."""
    if not body:
        return WechatPayRequest()  # no body: the defaults
    types = [v for k, v in scope["headers"] if k == b"content-type"]
    if len(types) != 1 or not (types[0].lower() == b"application/json"
                               or types[0].lower().startswith(b"application/json;")):
        return None
    try:
        return WechatPayRequest.model_validate_json(body)
    except ValidationError:
        return None


def _route_path(scope: Scope) -> str:
    """The path inside the mounted control app (without ``/_admin``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def add_wechat_admin_routes(admin: FastAPI, bank: Bank, sender: Dispatcher, *,
                            token: str | None = None) -> None:
    """``/_admin/wechat/*``: the user's side of WeChat Pay, deliveries and settlements.

    ``token``: the control API's admin token (None: none needed), for :class:`DirectPay`.
    """
    admin.add_middleware(DirectPay, bank=bank, token=token)

    @admin.post("/wechat/orders/{out_trade_no}/pay", tags=["wechat"],
                summary="The user pays the order now (clock time); the notification is owed",
                responses={200: {"description": "the paid order, as GET /wechat/orders shows it",
                                 "content": {"application/json": {"schema": {"type": "object"}}}}})
    async def wechat_pay(out_trade_no: str, body: WechatPayRequest | None = None,
                         mchid: Mchid = None) -> Response:
        body = body or WechatPayRequest()
        # Encoded here (orjson) rather than through FastAPI's generic encoder: payments
        # come in bulk in load tests, and the encoder was a visible share of each.
        return json_response(200, bank.wechat.pay(out_trade_no, mchid=mchid, openid=body.openid,
                                                  bank_type=body.bank_type))

    @admin.post("/wechat/orders/{out_trade_no}/refund", tags=["wechat"],
                summary="Refund (part of) a paid order now; it goes into today's REFUND bill")
    async def wechat_refund(out_trade_no: str, body: WechatRefundRequest,
                            mchid: Mchid = None) -> dict[str, Any]:
        return bank.wechat.refund(out_trade_no, body.amount, mchid=mchid,
                                  out_refund_no=body.out_refund_no)

    @admin.get("/wechat/orders", tags=["wechat"],
               summary="Orders: all, or those paid on one WeChat day (bill_date)")
    async def wechat_orders(bill_date: Annotated[str | None, Query(
            pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")] = None) -> list[dict[str, Any]]:
        day = None
        if bill_date is not None:
            try:
                day = date.fromisoformat(bill_date)
            except ValueError:
                raise MalformedRequest(f"bill_date {bill_date!r} is not a date") from None
        return bank.wechat.orders(day)

    @admin.get("/wechat/notifications", tags=["wechat"],
               summary="Every delivery attempt (and dropped or pending deliveries)")
    async def wechat_notifications(out_trade_no: str | None = None) -> list[dict[str, Any]]:
        return bank.wechat.notifications.listing(out_trade_no)

    @admin.post("/wechat/notifications/deliver", tags=["wechat"],
                summary="Send every notification due now; returns the attempts made")
    async def wechat_deliver() -> dict[str, Any]:
        return {"attempts": await sender.deliver_due()}

    @admin.get("/wechat/settlements", tags=["wechat"], summary="T+1 settlements done")
    async def wechat_settlements() -> list[dict[str, Any]]:
        return bank.wechat.settlements()
