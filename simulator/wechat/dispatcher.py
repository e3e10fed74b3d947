"""Sending due payment notifications to the platforms' ``notify_url`` (httpx, async).

The HTTP POST never happens inside a database transaction or a scheduler job: jobs only
mark deliveries due; :meth:`Dispatcher.drain` first commits everything (``bank.flush``, so
no notification reports a payment a crash could still undo), then sends every due delivery
concurrently (rounds of up to 2,000, over 16 keep-alive connections), then records each
round's outcomes together, which schedules the next attempt per
``wechat.notify.retry_schedule`` relative to the clock's now. One drain runs at a time.
Every notification carries a ``Date`` header with the channel's (virtual) clock.

Who drains: the control API after every clock advance (and ``POST
/_admin/wechat/notifications/deliver``), so in manual mode a test that advanced the clock
knows every notification due by then was attempted; in realtime/accelerated modes a
background task of the server (:func:`run_forever`). :meth:`Dispatcher.advance_to` moves
the clock in steps, stopping at every notification attempt on the way, so retries inside
one long advance happen at their scheduled virtual times.

A success is HTTP 200 or 204 from the platform (unless the delivery's fault says to
ignore the answer); any other status, a timeout or a refused connection is a failure.

Example::

    dispatcher = Dispatcher(bank)
    attempts = await dispatcher.deliver_due()             # what was sent, with outcomes
    jobs = await dispatcher.advance_to(bank.clock.now() + timedelta(hours=1))
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import ssl
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

from contracts.wechat_signing import ALGORITHM, encrypt_resource
from simulator.clock import from_us
from simulator.domain.wechat_rules import header_nonce, resource_nonce
from simulator.wechat.notifications import DueDelivery

if TYPE_CHECKING:
    # Imported where used: httpx costs ~0.1 s of `banksim serve`'s start-up, and the
    # first notification is soon enough.
    import httpx

    from simulator.bank import Bank

log = logging.getLogger("banksim.wechat")

# httpcore runs ``import sniffio`` for every lock, event and connection check of an async
# request; when sniffio is not installed each of those failed imports searches sys.path
# again (a visible share of a notification's cost). Recording the absence once makes
# them fail at once, and httpcore then assumes asyncio, which is what runs here.
if importlib.util.find_spec("sniffio") is None:
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]
_CONCURRENCY = 16
_ROUND = 2000
_MAX_ROUNDS = 10_000
_IDLE_POLL_S = 0.25
_ERROR_TEXT = 200


def notification_body(bank: Bank, delivery: DueDelivery, api_v3_key: str) -> bytes:
    """The notification JSON of a delivery: the same bytes on every attempt."""
    nonce = resource_nonce(bank.profile.seed, delivery.notification_id)
    body = {
        "id": delivery.notification_id,
        "create_time": from_us(delivery.created_us).isoformat(timespec="seconds"),
        "event_type": "TRANSACTION.SUCCESS",
        "resource_type": "encrypt-resource",
        "summary": "支付成功",
        "resource": {
            "algorithm": ALGORITHM,
            "ciphertext": encrypt_resource(api_v3_key, delivery.resource.encode("utf-8"),
                                           "transaction", nonce),
            "associated_data": "transaction",
            "nonce": nonce,
            "original_type": "transaction",
        },
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _outcome(delivery: DueDelivery, status: int | None, error: str | None) -> str:
    if status in (200, 204) and error is None:
        return "IGNORED" if delivery.ignore_answer else "SUCCESS"
    return "FAILED"


class Dispatcher:
    """Sends due notifications for one Bank; see the module docstring."""

    def __init__(self, bank: Bank, *, wall: Callable[[], float] = time.time,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.bank = bank
        self._wall = wall
        self._transport = transport
        self._lock = asyncio.Lock()
        self._tls: ssl.SSLContext | None = None

    def _tls_context(self) -> ssl.SSLContext:
        # Made once: every httpx client would otherwise load the CA bundle again (tens of
        # milliseconds each, for every lane of every drain).
        if self._tls is None:
            import httpx

            self._tls = httpx.create_ssl_context()
        return self._tls

    async def deliver_due(self) -> list[dict[str, Any]]:
        """Run the jobs due by now, then send every due delivery; returns the attempts made."""
        self.bank.scheduler.run_due()
        return await self.drain()

    async def drain(self) -> list[dict[str, Any]]:
        """Send every delivery that is due now and record the outcomes."""
        async with self._lock:
            bank = self.bank
            bank.flush()
            made: list[dict[str, Any]] = []
            if not bank.wechat.notifications.due(limit=1):
                return made
            import httpx

            timeout = httpx.Timeout(bank.profile.wechat.notify.timeout_ms / 1000).as_dict()
            async with contextlib.AsyncExitStack() as stack:
                # One transport per lane, each with ONE keep-alive connection, kept for the
                # whole drain. Transports, not clients: a notification needs no cookies,
                # auth, redirects or URL merging, and the client layer cost a third of a
                # send; one pool per lane because httpcore's pool scans every connection and
                # waiting request on each request.
                lanes: list[httpx.AsyncBaseTransport] = []
                # Rounds of at most _ROUND deliveries until nothing is due; a round that
                # recorded nothing (the state changed under it) ends the drain.
                for _ in range(_MAX_ROUNDS):
                    due = bank.wechat.notifications.due(limit=_ROUND)
                    if not due:
                        break
                    while len(lanes) < min(_CONCURRENCY, len(due)):  # no more than needed
                        lanes.append(await self._lane(stack))
                    recorded = await self._round(lanes, due, timeout)
                    made += recorded
                    bank.flush()
                    if not recorded:
                        break
            return made

    async def _lane(self, stack: contextlib.AsyncExitStack) -> httpx.AsyncBaseTransport:
        if self._transport is not None:  # a given transport (tests) serves every lane
            return self._transport
        import httpx

        return await stack.enter_async_context(httpx.AsyncHTTPTransport(
            verify=self._tls_context(), trust_env=False,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1)))

    async def _round(self, lanes: list[httpx.AsyncBaseTransport], due: list[DueDelivery],
                     timeout: dict[str, float | None]) -> list[dict[str, Any]]:
        bank = self.bank
        results: list[tuple[int | None, str | None]] = [(None, None)] * len(due)
        work = iter(enumerate(due))

        async def lane(transport: httpx.AsyncBaseTransport) -> None:
            for index, delivery in work:  # one shared iterator: each lane takes the next
                results[index] = await self._send(transport, delivery, timeout)

        await asyncio.gather(*(lane(transport) for transport in lanes))
        # Recorded in due order, after every send: outcomes never depend on which
        # answer came back first.
        outcomes = [(delivery, _outcome(delivery, status, error), status, error)
                    for delivery, (status, error) in zip(due, results, strict=True)]
        recorded = bank.wechat.notifications.record_many(
            outcomes, sent_us=bank.clock.now_us(), settings=bank.profile.wechat.notify)
        return [{"delivery_id": d.id, "notification_id": d.notification_id,
                 "out_trade_no": d.out_trade_no, "attempt": d.attempt, "outcome": outcome,
                 "http_status": status, "error": error}
                for (d, outcome, status, error), done in zip(outcomes, recorded, strict=True)
                if done]

    async def _send(self, transport: httpx.AsyncBaseTransport, d: DueDelivery,
                    timeout: dict[str, float | None]) -> tuple[int | None, str | None]:
        import httpx

        merchant = self.bank.wechat.merchant(d.mchid)
        if merchant is None:
            return None, f"merchant {d.mchid} is no longer in the profile"
        body = notification_body(self.bank, d, merchant.api_v3_key)
        keys = self.bank.wechat.keys
        signed = keys.answer_headers(body, keys.signer(merchant, None), int(self._wall()),
                                     header_nonce(self.bank.profile.seed, d.notification_id, d.attempt))
        # Date: the channel's (virtual) clock at sending, the standard HTTP header a message
        # carries its origination time in; a platform that runs on the bank's clock takes
        # its reading from it instead of asking (Wechatpay-Timestamp stays wall time: it is
        # what the signature's freshness window is checked against).
        headers = {"Content-Type": "application/json",
                   "Date": format_datetime(self.bank.clock.now().astimezone(UTC), usegmt=True),
                   **{k.decode(): v.decode() for k, v in signed}}
        try:
            request = httpx.Request("POST", d.notify_url, content=body, headers=headers,
                                    extensions={"timeout": timeout})
            response = await transport.handle_async_request(request)
            try:
                await response.aread()  # the whole answer, so the connection can be reused
            finally:
                await response.aclose()
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # also a notify_url it cannot use
            return None, f"{type(exc).__name__}: {exc}"[:_ERROR_TEXT] or type(exc).__name__
        if response.status_code in (200, 204):
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}: {response.text[:_ERROR_TEXT]}"

    async def advance_to(self, target: datetime) -> list[dict[str, Any]]:
        """Advance the clock to ``target``, sending notifications at their times on the way.

        Returns the jobs that ran, like :meth:`simulator.bank.Bank.advance_to`.
        """
        bank = self.bank
        ran: list[dict[str, Any]] = []
        await self.drain()
        while (due := bank.wechat.notifications.next_job_due()) is not None and due <= target:
            ran += bank.advance_to(max(due, bank.clock.now()))
            await self.drain()
        ran += bank.advance_to(max(target, bank.clock.now()))
        await self.drain()
        return ran


async def run_forever(dispatcher: Dispatcher) -> None:
    """The server's background sender in realtime/accelerated modes (manual mode waits for
    the control API)."""
    while True:
        await asyncio.sleep(_IDLE_POLL_S)
        if dispatcher.bank.clock.mode.kind == "manual":
            continue
        try:
            await dispatcher.drain()
        except Exception:  # the sender must outlive one bad round
            log.exception("sending WeChat notifications failed")
