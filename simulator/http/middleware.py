"""Transport concerns of the bank API, as one pure ASGI middleware around ``/api/``.

In order: body size limit (1011), signature (1001-1005), then the profile's HTTP faults
(latency, injected error, hold the answer, lose the answer after the bank committed),
then the route; finally one ``request`` event on the timeline. It is pure ASGI rather
than a Starlette ``BaseHTTPMiddleware`` because it must hold or drop the response after
the route committed, and because it sits on the hot path of every request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simulator.bank import Bank
from simulator.domain.faults import Decision, RequestFacts, decide
from simulator.errors import BankError, BodyTooLarge, error_for_code
from simulator.http.signing import SignatureVerifier
from simulator.operations import resolve

log = logging.getLogger("banksim.http")
_JSON = [(b"content-type", b"application/json")]


async def send_json(send: Send, status: int, body: dict[str, Any],
                    extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = orjson.dumps(body)
    headers = [*_JSON, (b"content-length", str(len(payload)).encode()), *(extra_headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


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
        await self._bank_api(scope, receive, send_durably)

    async def _bank_api(self, scope: Scope, receive: Receive, send: Send) -> None:
        bank = self.bank
        method: str = scope["method"]
        path: str = scope["path"]
        # The signature covers the path exactly as sent (percent-encoding included).
        raw_path = (scope.get("raw_path") or path.encode()).decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            body = await self._read_body(receive, bank.profile.security.max_body_bytes)
        except BodyTooLarge as err:
            await send_json(send, err.entry.http, err.as_dict(), [(b"connection", b"close")])
            return
        if body is None:  # client went away
            return
        # Only the x- headers matter here (the signature's four); ASGI names are lowercase.
        headers = {k.decode("latin-1"): v.decode("latin-1")
                   for k, v in scope["headers"] if k[:2] == b"x-"}
        try:
            platform = self.verifier.verify(bank.profile, method,
                                            raw_path + ("?" + query if query else ""), headers, body)
        except BankError as err:
            bank.log_request("request.rejected", ref=None, app_id=headers.get("x-app-id"),
                       detail={"method": method, "path": path, "code": err.code})
            await send_json(send, err.entry.http, err.as_dict())
            return

        resolved = resolve(method, path)
        decision, serial, operation = Decision(), "", "unknown"
        if resolved is not None:
            op, params = resolved
            operation = op.name
            fields = _json_fields(body) if op.mutating else {}
            serial = str(fields.get("request_serial") or params.get("request_serial")
                         or params.get("account_no") or "")
            attempt = bank.next_attempt(platform.app_id, operation, serial)
            decision = decide(bank.profile.http_faults, bank.profile.seed, RequestFacts(
                operation, method, path, platform.app_id, serial, fields, attempt))
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

        state = scope.setdefault("state", {})
        state["app_id"] = platform.app_id
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

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

            await self.app(scope, replay, forward)
            return

        captured: list[Message] = []

        async def capture(message: Message) -> None:
            captured.append(message)

        await self.app(scope, replay, capture)
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
        chunks: list[bytes] = []
        size = 0
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


def _json_fields(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
