"""Transport concerns of the bank API, as one pure ASGI middleware around ``/api/``.

In order: body size limit (1011), signature (1001-1005), then the profile's HTTP faults
(latency, injected error, hold the answer, lose the answer after the bank committed),
then the route; finally one ``request`` event on the timeline. It is pure ASGI rather
than a Starlette ``BaseHTTPMiddleware`` because it must hold or drop the response after
the route committed, and because it sits on the hot path of every request.

The route is the operation's direct form (``bank_routes.direct_routes``) when it has one
and the body is a JSON object sent as ``application/json``: the same schema and Bank call
without FastAPI's routing and dependency machinery, about a third of an opening's cost.
Anything else, and any body the direct form finds invalid, goes to the FastAPI app.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simulator.bank import Bank
from simulator.domain.faults import NO_FAULT, RequestFacts, attempt_matters, decide
from simulator.errors import BankError, BodyTooLarge, error_for_code
from simulator.http.asgi import replaying
from simulator.http.bank_routes import DirectRoute, direct_routes
from simulator.http.signing import SignatureVerifier
from simulator.operations import resolve

log = logging.getLogger("banksim.http")
_JSON = (b"content-type", b"application/json")
_REPLAYED = [(b"x-idempotent-replay", b"true")]


async def send_json(send: Send, status: int, body: dict[str, Any],
                    extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await _send_payload(send, status, orjson.dumps(body), extra_headers)


async def _send_payload(send: Send, status: int, payload: bytes,
                        extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-length", str(len(payload)).encode()), _JSON]
    if extra_headers:
        headers += extra_headers
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


# (status, JSON body, extra headers, the bank's code) of a direct route's answer.
_Reply = tuple[int, bytes, list[tuple[bytes, bytes]] | None, str]


def _direct_reply(direct: DirectRoute, app_id: str, fields: dict[str, Any]) -> _Reply | None:
    """Run a direct route; None when the body is not valid for its schema."""
    try:
        answer = direct(app_id, fields)
    except BankError as err:  # what the app's BankError handler would answer
        return err.entry.http, orjson.dumps(err.as_dict()), None, err.code
    if answer is None:
        return None
    payload = answer.encoded or orjson.dumps(answer.body)
    return (answer.status, payload, _REPLAYED if answer.replayed else None,
            str(answer.body.get("code")))


class Durability:
    """Group commit for the server: one COMMIT per event-loop turn, before any response.

    A request whose work is done waits here; the flush is scheduled with ``call_soon``, so
    every request that finishes its work in the same turn of the loop shares the commit.
    """

    def __init__(self, bank: Bank) -> None:
        self.bank = bank
        self._pending: asyncio.Future[None] | None = None

    async def wait(self) -> None:
        if not self.bank.has_unflushed:
            return
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.create_future()
            loop.call_soon(self._flush)
        await self._pending

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        assert pending is not None
        try:
            self.bank.flush()
        except BaseException as exc:  # the waiting requests must hear about it
            pending.set_exception(exc)
        else:
            pending.set_result(None)


class BankApiMiddleware:
    def __init__(self, app: ASGIApp, bank: Bank, verifier: SignatureVerifier) -> None:
        self.app = app
        self.bank = bank
        self.verifier = verifier
        self.durability = Durability(bank)
        self.direct = direct_routes(bank)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        durable = self.durability

        async def send_durably(message: Message) -> None:
            # No response leaves before the work it reports is committed.
            if message["type"] == "http.response.start":
                await durable.wait()
            await send(message)

        if not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send_durably)
            return
        await self._bank_api(scope, receive, send_durably, send)

    async def _bank_api(self, scope: Scope, receive: Receive, send: Send,
                        raw_send: Send) -> None:
        """``send`` waits for durability before a response starts; ``raw_send`` does not
        (the hot path waits once itself)."""
        bank = self.bank
        method: str = scope["method"]
        path: str = scope["path"]
        # The signature covers the path exactly as sent (percent-encoding included).
        raw_path: bytes | None = scope.get("raw_path")
        target = raw_path.decode("latin-1") if raw_path else path
        query: bytes = scope.get("query_string", b"")
        if query:
            target += "?" + query.decode("latin-1")
        try:
            body = await self._read_body(receive, bank.profile.security.max_body_bytes)
        except BodyTooLarge as err:
            await send_json(send, err.entry.http, err.as_dict(), [(b"connection", b"close")])
            return
        if body is None:  # client went away
            return
        # Only the x- headers matter for the signature (ASGI names are lowercase); the
        # content type decides whether the body may take the direct route.
        headers: dict[str, str] = {}
        content_types: list[bytes] = []
        for name, value in scope["headers"]:
            if name[:2] == b"x-":
                headers[name.decode("latin-1")] = value.decode("latin-1")
            elif name == b"content-type":
                content_types.append(value)
        try:
            platform = self.verifier.verify(bank.profile, method, target, headers, body)
        except BankError as err:
            bank.log_request("request.rejected", ref=None, app_id=headers.get("x-app-id"),
                             detail={"method": method, "path": path, "code": err.code})
            await send_json(send, err.entry.http, err.as_dict())
            return

        resolved = resolve(method, path)
        decision, serial, operation = NO_FAULT, "", "unknown"
        fields: dict[str, Any] | None = None
        if resolved is not None:
            op, params = resolved
            operation = op.name
            if op.mutating:
                fields = _json_object(body)
            serial = str((fields and fields.get("request_serial")) or params.get("request_serial")
                         or params.get("account_no") or "")
            facts = RequestFacts(operation, method, path, platform.app_id, serial, fields or {}, 1)
            faults = bank.profile.http_faults
            if attempt_matters(faults, facts):  # else every attempt is decided alike
                facts = RequestFacts(operation, method, path, platform.app_id, serial, fields or {},
                                     bank.next_attempt(platform.app_id, operation, serial))
            decision = decide(faults, bank.profile.seed, facts)
        if decision.latency_ms:
            await asyncio.sleep(decision.latency_ms / 1000)

        detail: dict[str, Any] = {"method": method, "path": path, "operation": operation,
                                  "serial": serial}
        if decision.rule:
            detail["fault"] = decision.rule
        if decision.error:
            injected = error_for_code(decision.error, "injected by the profile")
            body_out = injected.as_dict()
            if serial:
                body_out["request_serial"] = serial
            bank.log_request("request", app_id=platform.app_id, ref=serial,
                             detail={**detail, "status": injected.entry.http, "code": injected.code})
            await send_json(send, injected.entry.http, body_out)
            return

        direct = (self.direct.get(operation)
                  if fields is not None and _is_json_type(content_types) else None)
        if direct is not None and fields is not None and not (
                decision.lose_response or decision.hold_ms):
            # The hot path, straight through: the direct route, one timeline entry, the
            # answer once its work is durable.
            reply = _direct_reply(direct, platform.app_id, fields)
            if reply is not None:
                status, payload, extra, detail["code"] = reply
                detail["status"] = status
                bank.log_request("request", app_id=platform.app_id, ref=serial, detail=detail)
                await self.durability.wait()  # no answer before its work is committed
                await _send_payload(raw_send, status, payload, extra)
                return
            direct = None  # not valid for the schema: the FastAPI route answers

        state = scope.setdefault("state", {})
        state["app_id"] = platform.app_id

        async def route(respond: Send) -> None:
            if direct is not None and fields is not None:
                reply = _direct_reply(direct, platform.app_id, fields)
                if reply is not None:
                    status, payload, extra, state["bank_code"] = reply
                    await _send_payload(respond, status, payload, extra)
                    return
            await self.app(scope, replaying(body, receive), respond)

        def log_answer(status: int) -> None:
            # Every bank-API response (routes and error handlers) leaves its code in the
            # request state, so the timeline needs no second parse of the body.
            bank.log_request("request", app_id=platform.app_id, ref=serial,
                             detail={**detail, "status": status, "code": state.get("bank_code")})

        if not (decision.lose_response or decision.hold_ms):
            async def forward(message: Message) -> None:
                if message["type"] == "http.response.start":
                    log_answer(message["status"])  # before send: it joins the same flush
                await send(message)

            await route(forward)
            return

        captured: list[Message] = []

        async def capture(message: Message) -> None:
            captured.append(message)

        await route(capture)
        log_answer(next((m["status"] for m in captured if m["type"] == "http.response.start"), 500))
        if decision.lose_response:
            # The bank has committed; the platform never hears. Starting a response that
            # declares a body and then returning makes the server close the connection
            # mid-response, which is what a lost answer looks like on the wire.
            log.info("fault: dropping the response to %s %s (serial %s)", method, path, serial)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"1048576")]})
            return
        if decision.hold_ms:
            await asyncio.sleep(decision.hold_ms / 1000)
        for message in captured:
            await send(message)

    async def _read_body(self, receive: Receive, limit: int) -> bytes | None:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        first: bytes = message.get("body", b"")
        if len(first) > limit:
            raise BodyTooLarge(f"body exceeds {limit} bytes")
        if not message.get("more_body", False):
            return first  # the usual case: the whole body in one message
        chunks = [first]
        size = len(first)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"body exceeds {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class DroppedResponseFilter(logging.Filter):
    """Silences the server's complaint about the responses this middleware drops on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None (not JSON, or not an object)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _is_json_type(content_types: list[bytes]) -> bool:
    # Exactly the media types FastAPI reads as JSON, kept narrow on purpose: anything
    # unusual goes through the framework, which answers it as it always has.
    if len(content_types) != 1:
        return False
    value = content_types[0].lower()
    return value == b"application/json" or value.startswith(b"application/json;")
