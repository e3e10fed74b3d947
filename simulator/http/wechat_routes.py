"""The fake WeChat Pay v3 API under ``/wechat/v3`` (contract: ``contracts/wechat-pay.openapi.yaml``).

A FastAPI app of its own, mounted by :func:`simulator.http.app.create_app`, so it has its own
errors in the v3 shape (``{"code": "PARAM_ERROR", "message": ...}``) and its own signature
check (:class:`WechatAuth`, scheme in :mod:`contracts.wechat_signing`): a request with a
missing or bad ``Authorization``, an unknown merchant or a timestamp outside
``security.signature_window_seconds`` of the wall clock gets 401 SIGN_ERROR before any
route runs. Invalid bodies and parameters are 400 PARAM_ERROR, never FastAPI's 422.

Example::

    app.mount("/wechat/v3", build_wechat_api(bank))
"""

from __future__ import annotations

import gzip
import hashlib
import time
from collections.abc import Callable, MutableMapping
from datetime import date, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import SkipJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from contracts.wechat_signing import SCHEME, SignatureFormatError, parse_authorization, verify_request
from simulator.bank import Bank
from simulator.config import WechatMerchant
from simulator.http.asgi import replaying
from simulator.wechat.errors import (
    FrequencyLimited,
    ParamError,
    ResourceNotExists,
    SignError,
    WechatError,
)
from simulator.wechat.refunds import Refunds
from simulator.wechat.replay import LIMIT as NONCE_LIMIT
from simulator.wechat.replay import NonceMemoryFull

PREFIX = "/wechat/v3"
ROOT_PREFIX = "/v3"  # WeChat Pay's own: https://api.mch.weixin.qq.com/v3/...
NATIVE_ORDER_PATH = "/pay/transactions/native"
OUT_TRADE_NO_PATTERN = r"^[0-9A-Za-z_|*-]{6,32}$"
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
_JSON = "application/json"


# -- bodies ---------------------------------------------------------------------------------


class WechatErrorAnswer(BaseModel):
    code: str = Field(description="PARAM_ERROR, SIGN_ERROR, ORDER_NOT_EXIST, ...")
    message: str


class OrderAmount(BaseModel):
    total: int = Field(ge=1, le=10_000_000_000, description="fen")
    currency: Literal["CNY"] = "CNY"


class NativeOrderRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    appid: str = Field(min_length=1, max_length=32)
    mchid: str = Field(min_length=1, max_length=32)
    description: str = Field(min_length=1, max_length=127, pattern=_NO_CONTROL)
    out_trade_no: str = Field(pattern=OUT_TRADE_NO_PATTERN)
    notify_url: str = Field(max_length=256, pattern=r"^https?://[^\s]+$")
    amount: OrderAmount
    attach: Annotated[str, Field(max_length=128, pattern=_NO_CONTROL)] | SkipJsonSchema[None] = None


class NativeOrderAnswer(BaseModel):
    code_url: str


class PayerOpenid(BaseModel):
    openid: str = Field(min_length=1, max_length=128, pattern=r"^[0-9A-Za-z_-]+$")


class JsapiOrderRequest(NativeOrderRequest):
    payer: PayerOpenid


class H5Info(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str = Field(min_length=1, max_length=32, description="iOS, Android or Wap")


class H5SceneInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")

    payer_client_ip: str = Field(min_length=1, max_length=45)
    h5_info: H5Info


class H5OrderRequest(NativeOrderRequest):
    scene_info: H5SceneInfo


class PrepayAnswer(BaseModel):
    prepay_id: str


class H5OrderAnswer(BaseModel):
    h5_url: str


class CloseRequest(BaseModel):
    mchid: str = Field(min_length=1, max_length=32)


class Payer(BaseModel):
    openid: str | SkipJsonSchema[None] = None


class AnswerAmount(BaseModel):
    total: int
    payer_total: int
    currency: str


class OrderAnswer(BaseModel):
    appid: str
    mchid: str
    out_trade_no: str
    transaction_id: str | SkipJsonSchema[None] = None
    trade_type: str
    trade_state: Literal["SUCCESS", "NOTPAY", "CLOSED", "REFUND"]
    trade_state_desc: str
    bank_type: str | SkipJsonSchema[None] = None
    success_time: str | SkipJsonSchema[None] = None
    payer: Payer
    amount: AnswerAmount
    attach: str | SkipJsonSchema[None] = None


class BillAnswer(BaseModel):
    hash_type: Literal["SHA1"]
    hash_value: str
    download_url: str


class EncryptedCertificate(BaseModel):
    algorithm: Literal["AEAD_AES_256_GCM"]
    nonce: str
    associated_data: str
    ciphertext: str = Field(description="base64 of the PEM certificate's cipher text + 16-byte tag")


class PlatformCertificate(BaseModel):
    serial_no: str = Field(description="upper-case hex: the Wechatpay-Serial of answers it signs")
    effective_time: str
    expire_time: str
    encrypt_certificate: EncryptedCertificate


class CertificatesAnswer(BaseModel):
    data: list[PlatformCertificate]


class RefundAmount(BaseModel):
    refund: int = Field(ge=1, le=10_000_000_000, description="fen")
    total: int = Field(ge=1, le=10_000_000_000, description="fen: the order's amount")
    currency: Literal["CNY"] = "CNY"


class RefundRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    transaction_id: Annotated[str, Field(pattern=r"^[0-9]{1,32}$")] | SkipJsonSchema[None] = None
    out_trade_no: Annotated[str, Field(pattern=OUT_TRADE_NO_PATTERN)] | SkipJsonSchema[None] = None
    out_refund_no: str = Field(pattern=r"^[0-9A-Za-z_|*@-]{1,64}$")
    reason: Annotated[str, Field(max_length=80, pattern=_NO_CONTROL)] | SkipJsonSchema[None] = None
    # Accepted for SDK compatibility; refund notifications are not sent yet (docs/wechat.md).
    notify_url: (Annotated[str, Field(max_length=256, pattern=r"^https?://[^\s]+$")]
                 | SkipJsonSchema[None]) = None
    amount: RefundAmount


class RefundAnswerAmount(BaseModel):
    total: int
    refund: int
    payer_total: int
    payer_refund: int
    settlement_refund: int
    settlement_total: int
    discount_refund: int
    currency: str


class RefundAnswer(BaseModel):
    refund_id: str
    out_refund_no: str
    transaction_id: str
    out_trade_no: str
    channel: str
    user_received_account: str
    success_time: str
    create_time: str
    status: Literal["SUCCESS", "CLOSED", "PROCESSING", "ABNORMAL"]
    funds_account: str
    amount: RefundAnswerAmount


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": WechatErrorAnswer, "description": "an error in the v3 shape"}
            for s in statuses}


# -- transport --------------------------------------------------------------------------------


def _is_json(scope: Scope) -> bool:
    """Exactly one Content-Type, and it is JSON (what FastAPI would read the body as)."""
    types = [v for k, v in scope["headers"] if k == b"content-type"]
    if len(types) != 1:
        return False
    value: bytes = types[0].lower()
    return value == b"application/json" or value.startswith(b"application/json;")


def _route_path(scope: Scope) -> str:
    """The path inside the mounted app (without the mount's prefix)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = orjson.dumps(body)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", _JSON.encode()),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


def _header(scope: Scope, name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in scope["headers"] if k == name), None)


class _SignedSend:
    """Holds an answer until its body is complete, then sends it with the platform's
    signature headers (``Request-ID``, ``Wechatpay-*``) over exactly that body."""

    def __init__(self, send: Send, auth: WechatAuth, scope: Scope) -> None:
        self._send = send
        self._auth = auth
        self._scope = scope
        self._start: dict[str, Any] | None = None
        self._chunks: list[bytes] = []
        self.merchant: WechatMerchant | None = None

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self._start = dict(message)
            return
        if message["type"] != "http.response.body" or self._start is None:
            await self._send(message)
            return
        self._chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(self._chunks)
        keys = self._auth.bank.wechat.keys
        signer = keys.signer(self.merchant, _header(self._scope, b"wechatpay-serial"))
        headers = [(k, v) for k, v in self._start.get("headers", []) if k != b"content-length"]
        headers += [(b"content-length", str(len(body)).encode()),
                    *keys.answer_headers(body, signer, int(self._auth.wall()))]
        await self._send({**self._start, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})


class WechatAuth:
    """Pure ASGI check of the v3 ``Authorization`` header over the exact bytes received, and
    the platform's signature on every answer (errors included)."""

    def __init__(self, app: ASGIApp, bank: Bank, wall: Callable[[], float] = time.time) -> None:
        self.app = app
        self.bank = bank
        self.wall = wall

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        signed = _SignedSend(send, self, scope)
        limit = self.bank.profile.security.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _send_json(signed, 400, ParamError(f"body exceeds {limit} bytes").as_dict())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            merchant = self._verify(scope, body, signed)
        except WechatError as err:
            await _send_json(signed, err.status, err.as_dict())
            return
        if await self._direct(scope, merchant.mchid, body, signed):
            return
        scope.setdefault("state", {})["mchid"] = merchant.mchid
        await self.app(scope, replaying(body, receive), signed)

    async def _direct(self, scope: Scope, mchid: str, body: bytes, send: Send) -> bool:
        """Create a NATIVE order without FastAPI's routing and dependency machinery.

        The hot call of a busy top-up day; the same schema, the same channel call, the same
        answer. Whatever is not plainly valid here (another route, not JSON, a body the
        schema refuses) returns False and FastAPI answers it, so every error keeps exactly
        the framework's shape.
        """
        if (scope["method"] != "POST" or _route_path(scope) != NATIVE_ORDER_PATH
                or scope.get("query_string") or not _is_json(scope)):
            return False
        try:
            order = NativeOrderRequest.model_validate_json(body)
        except ValidationError:
            return False
        try:
            answer = self.bank.wechat.create_order(mchid, order.model_dump())
        except WechatError as err:
            await _send_json(send, err.status, err.as_dict())
        else:
            await _send_json(send, 200, answer)
        return True

    def _verify(self, scope: Scope, body: bytes, signed: _SignedSend) -> WechatMerchant:
        """The merchant that signed this request, or the WeChat error that refuses it.

        Checked in this order, so that nothing a third party can send uses up the
        merchant's nonce: shape, merchant, serial, signature, freshness, then the nonce.
        """
        header = _header(scope, b"authorization")
        if not header:
            raise SignError(f"Http头Authorization值格式错误: send an Authorization header ({SCHEME})")
        try:
            auth = parse_authorization(header)
        except SignatureFormatError as exc:
            raise SignError(f"Http头Authorization值格式错误: {exc}") from None
        merchant = self.bank.profile.wechat.merchant(auth.mchid)
        if merchant is None:
            raise SignError(f"商户号不存在: unknown mchid {auth.mchid}")
        signed.merchant = merchant
        if auth.serial_no.upper() != merchant.merchant_serial.upper():
            raise SignError(f"商户证书序列号有误。请使用签名私钥匹配的证书序列号: serial_no {auth.serial_no} "
                            f"is not merchant {auth.mchid}'s certificate")
        # The signature covers the path exactly as sent (mount prefix and percent-encoding).
        path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        key = self.bank.wechat.keys.merchant_key(merchant)
        if not verify_request(key, auth, scope["method"], path + ("?" + query if query else ""), body):
            raise SignError("签名验证不通过: the signature does not match the request (method, URL "
                            "as sent, timestamp, nonce, body) under the merchant's key")
        window = self.bank.profile.security.signature_window_seconds
        now = self.wall()
        stamp = int(auth.timestamp)
        if abs(now - stamp) > window:
            raise SignError(f"签名过期: timestamp is more than {window} s from the channel's clock")
        try:
            fresh = self.bank.wechat.nonces.remember(auth.mchid, auth.nonce, until=stamp + window, now=now)
        except NonceMemoryFull:
            raise FrequencyLimited(f"more than {NONCE_LIMIT} signed requests of merchant {auth.mchid} "
                                   "within the signature window") from None
        if not fresh:
            raise SignError(f"请求重放: nonce_str {auth.nonce} was already used by a request "
                            "that is still within the signature window")
        return merchant


# -- error handlers ---------------------------------------------------------------------------


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=_JSON)


async def _wechat_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WechatError)
    return _json(exc.status, exc.as_dict())


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc'] if p != 'body') or 'body'}: {err['msg']}"
        for err in exc.errors())
    return _json(400, ParamError(problems[:1000]).as_dict())


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    err: WechatError = (ResourceNotExists(str(exc.detail)) if exc.status_code in (404, 405)
                        else ParamError(str(exc.detail)))
    return _json(err.status, err.as_dict())


# -- the API ------------------------------------------------------------------------------------

OutTradeNo = Annotated[str, Path(pattern=OUT_TRADE_NO_PATTERN)]
Mchid = Annotated[str, Query(min_length=1, max_length=32)]
TransactionId = Annotated[str, Path(pattern=r"^[0-9]{1,32}$")]
# WeChat's only compression of bill files; absent: the file as is.
TarType = Annotated[Literal["GZIP"] | SkipJsonSchema[None],
                    Query(description="GZIP: the file gzip-compressed")]


def _signer(request: Request, claimed: str) -> str:
    mchid = str(request.state.mchid)
    if claimed != mchid:
        raise ParamError(f"mchid {claimed} is not the merchant that signed ({mchid})")
    return mchid


def _parse_day(text: str) -> date:
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise ParamError(f"bill_date {text!r} is not a date (yyyy-MM-dd)") from None


def build_wechat_api(bank: Bank, *, wall: Callable[[], float] = time.time) -> FastAPI:
    """The v3 API as an app of its own, to be mounted at :data:`PREFIX`."""
    api = FastAPI(title="banksim fake WeChat Pay (API v3)", version="1.0.0",
                  docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)
    api.add_exception_handler(WechatError, _wechat_error)
    api.add_exception_handler(RequestValidationError, _validation_error)
    api.add_exception_handler(StarletteHTTPException, _http_error)

    @api.get("/certificates", operation_id="list_certificates", response_model=CertificatesAnswer,
             responses=_errors(400, 401),
             summary="The platform certificates, each AEAD_AES_256_GCM-encrypted with the APIv3 key")
    async def certificates(request: Request) -> Response:
        merchant = bank.wechat.merchant(str(request.state.mchid))
        assert merchant is not None  # WechatAuth only lets known merchants through
        return _json(200, bank.wechat.keys.certificates_answer(merchant))

    @api.post(NATIVE_ORDER_PATH, operation_id="create_native_order",
              response_model=NativeOrderAnswer, responses=_errors(400, 401, 403),
              summary="Create a NATIVE (QR code) order; the same content again, the same answer")
    async def create_native(body: NativeOrderRequest, request: Request) -> Response:
        mchid = str(request.state.mchid)
        return _json(200, bank.wechat.create_order(mchid, body.model_dump()))

    @api.post("/pay/transactions/jsapi", operation_id="create_jsapi_order", response_model=PrepayAnswer,
              responses=_errors(400, 401, 403),
              summary="Create a JSAPI (official account / mini program) order for payer.openid")
    async def create_jsapi(body: JsapiOrderRequest, request: Request) -> Response:
        return _json(200, bank.wechat.create_order(str(request.state.mchid), body.model_dump(), "JSAPI"))

    @api.post("/pay/transactions/app", operation_id="create_app_order", response_model=PrepayAnswer,
              responses=_errors(400, 401, 403), summary="Create an APP order")
    async def create_app(body: NativeOrderRequest, request: Request) -> Response:
        return _json(200, bank.wechat.create_order(str(request.state.mchid), body.model_dump(), "APP"))

    @api.post("/pay/transactions/h5", operation_id="create_h5_order", response_model=H5OrderAnswer,
              responses=_errors(400, 401, 403), summary="Create an H5 (mobile browser) order")
    async def create_h5(body: H5OrderRequest, request: Request) -> Response:
        return _json(200, bank.wechat.create_order(str(request.state.mchid), body.model_dump(), "H5"))

    @api.get("/pay/transactions/out-trade-no/{out_trade_no}", operation_id="query_order",
             response_model=OrderAnswer, response_model_exclude_none=True,
             responses=_errors(400, 401, 404), summary="An order by the merchant's order number")
    async def query(out_trade_no: OutTradeNo, mchid: Mchid, request: Request) -> Response:
        return _json(200, bank.wechat.query_order(_signer(request, mchid), out_trade_no))

    @api.get("/pay/transactions/id/{transaction_id}", operation_id="query_order_by_transaction_id",
             response_model=OrderAnswer, response_model_exclude_none=True,
             responses=_errors(400, 401, 404), summary="An order by WeChat's order number")
    async def query_by_id(transaction_id: TransactionId, mchid: Mchid, request: Request) -> Response:
        return _json(200, bank.wechat.query_by_transaction_id(_signer(request, mchid), transaction_id))

    @api.post("/pay/transactions/out-trade-no/{out_trade_no}/close", operation_id="close_order",
              status_code=204, response_class=Response, responses=_errors(400, 401, 404),
              summary="Close an unpaid order")
    async def close(out_trade_no: OutTradeNo, body: CloseRequest, request: Request) -> Response:
        bank.wechat.close_order(_signer(request, body.mchid), out_trade_no)
        return Response(status_code=204)

    refunds = Refunds(bank.wechat)

    @api.post("/refund/domestic/refunds", operation_id="create_refund", response_model=RefundAnswer,
              responses=_errors(400, 401, 404),
              summary="Refund (part of) a paid order; the same out_refund_no again, the same answer")
    async def create_refund(body: RefundRequest, request: Request) -> Response:
        return _json(200, refunds.create(str(request.state.mchid), body.model_dump()))

    @api.get("/refund/domestic/refunds/{out_refund_no}", operation_id="query_refund",
             response_model=RefundAnswer, responses=_errors(400, 401, 404),
             summary="A refund by the merchant's refund number")
    async def query_refund(out_refund_no: Annotated[str, Path(pattern=r"^[0-9A-Za-z_|*@-]{1,64}$")],
                           request: Request) -> Response:
        return _json(200, refunds.query(str(request.state.mchid), out_refund_no))

    @api.get("/bill/tradebill", operation_id="get_trade_bill", response_model=BillAnswer,
             responses=_errors(400, 401),
             summary="Where to download a day's trade bill (from T+1 bill_ready_at on)")
    async def trade_bill(request: Request,
                         bill_date: Annotated[str, Query(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")],
                         bill_type: Literal["ALL", "SUCCESS", "REFUND"] = "ALL",
                         tar_type: TarType = None) -> Response:
        mchid = str(request.state.mchid)
        merchant = bank.wechat.merchant(mchid)
        assert merchant is not None  # WechatAuth only lets known merchants through
        day = _parse_day(bill_date)
        data = bank.wechat.bill(mchid, day, bill_type)
        token = bank.wechat.bill_token(merchant, day, bill_type)
        host = request.headers.get("host")
        # Under the mount the request came in by (/v3 or /wechat/v3), as SDKs expect the
        # download URL to start with their own base URL.
        path = f"{request.scope.get('root_path', '')}/billdownload/file?token={token}"
        if tar_type:  # the file comes gzip-compressed; hash_value stays the bill's own
            path += f"&tar_type={tar_type}"
        url = f"{request.url.scheme}://{host}{path}" if host else path
        return _json(200, {"hash_type": "SHA1", "hash_value": hashlib.sha1(data).hexdigest(),
                           "download_url": url})

    @api.get("/billdownload/file", operation_id="download_bill", response_class=Response,
             responses={200: {"content": {"text/csv": {"schema": {"type": "string"}},
                                          "application/gzip": {"schema": {"type": "string"}}},
                              "description": "the bill (UTF-8, CRLF, contracts/wechat_bill.py)"},
                        **_errors(400, 401)},
             summary="The bill's bytes")
    async def download(request: Request,
                       token: Annotated[str, Query(min_length=1, max_length=128)],
                       tar_type: TarType = None) -> Response:
        mchid = str(request.state.mchid)
        merchant = bank.wechat.merchant(mchid)
        assert merchant is not None
        day, bill_type = bank.wechat.read_bill_token(merchant, token)
        data = bank.wechat.bill(mchid, day, bill_type)
        if tar_type == "GZIP":  # mtime 0: the same bill, the same bytes
            return Response(gzip.compress(data, mtime=0), media_type="application/gzip")
        return Response(data, media_type="text/csv; charset=utf-8")

    def openapi() -> dict[str, Any]:
        # Validation errors are answered as 400 PARAM_ERROR, so FastAPI's generated 422
        # (and its schemas) would document an answer the API never gives.
        if api.openapi_schema is None:
            doc = get_openapi(title=api.title, version=api.version, routes=api.routes)
            for item in doc.get("paths", {}).values():
                for op in item.values():
                    op.get("responses", {}).pop("422", None)
            schemas = doc.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            api.openapi_schema = doc
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
    api.add_middleware(WechatAuth, bank=bank, wall=wall)
    return api
