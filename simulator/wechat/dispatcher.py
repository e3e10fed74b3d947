"""Sending due payment notifications to the platforms' ``notify_url`` (httpx, async).

The HTTP POST never happens inside a database transaction or a scheduler job: jobs only
mark deliveries due; :meth:`Dispatcher.drain` first commits everything (``bank.flush``, so
no notification reports a payment a crash could still undo), then sends every due delivery
concurrently, then records each outcome, which schedules the next attempt per
``wechat.notify.retry_schedule`` relative to the clock's now. One drain runs at a time.

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
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

from contracts.wechat_signing import (
    ALGORITHM,
    HEADER_NONCE,
    HEADER_SERIAL,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    SERIAL,
    encrypt_resource,
    sign_notification,
)
from simulator.clock import from_us
from simulator.domain.wechat_rules import header_nonce, resource_nonce
from simulator.wechat.notifications import DueDelivery

if TYPE_CHECKING:
    from simulator.bank import Bank

log = logging.getLogger("banksim.wechat")
_CONCURRENCY = 16
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


class Dispatcher:
    """Sends due notifications for one Bank; see the module docstring."""

    def __init__(self, bank: Bank, *, wall: Callable[[], float] = time.time,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.bank = bank
        self._wall = wall
        self._transport = transport
        self._lock = asyncio.Lock()

    async def deliver_due(self) -> list[dict[str, Any]]:
        """Run the jobs due by now, then send every due delivery; returns the attempts made."""
        self.bank.scheduler.run_due()
        return await self.drain()

    async def drain(self) -> list[dict[str, Any]]:
        """Send every delivery that is due now and record the outcomes."""
        async with self._lock:
            bank = self.bank
            bank.flush()
            due = bank.wechat.notifications.due()
            if not due:
                return []
            timeout = bank.profile.wechat.notify.timeout_ms / 1000
            limit = asyncio.Semaphore(_CONCURRENCY)
            async with httpx.AsyncClient(timeout=timeout, transport=self._transport,
                                         follow_redirects=False, trust_env=False) as client:
                async def one(d: DueDelivery) -> tuple[int | None, str | None]:
                    async with limit:
                        return await self._send(client, d)

                results = await asyncio.gather(*(one(d) for d in due))
            made: list[dict[str, Any]] = []
            # Recorded in due order, after every send: outcomes never depend on which
            # answer came back first.
            sent_us = bank.clock.now_us()
            settings = bank.profile.wechat.notify
            for delivery, (status, error) in zip(due, results, strict=True):
                if status in (200, 204) and error is None:
                    outcome = "IGNORED" if delivery.ignore_answer else "SUCCESS"
                else:
                    outcome = "FAILED"
                if bank.wechat.notifications.record(delivery, sent_us=sent_us, outcome=outcome,
                                                    http_status=status, error=error,
                                                    settings=settings):
                    made.append({"delivery_id": delivery.id, "notification_id": delivery.notification_id,
                                 "out_trade_no": delivery.out_trade_no, "attempt": delivery.attempt,
                                 "outcome": outcome, "http_status": status, "error": error})
            bank.flush()
            return made

    async def _send(self, client: httpx.AsyncClient, d: DueDelivery) -> tuple[int | None, str | None]:
        merchant = self.bank.wechat.merchant(d.mchid)
        if merchant is None:
            return None, f"merchant {d.mchid} is no longer in the profile"
        body = notification_body(self.bank, d, merchant.api_v3_key)
        timestamp = str(int(self._wall()))
        nonce = header_nonce(self.bank.profile.seed, d.notification_id, d.attempt)
        headers = {"Content-Type": "application/json", HEADER_TIMESTAMP: timestamp,
                   HEADER_NONCE: nonce, HEADER_SERIAL: SERIAL,
                   HEADER_SIGNATURE: sign_notification(merchant.api_key, timestamp, nonce, body)}
        try:
            response = await client.post(d.notify_url, content=body, headers=headers)
        except httpx.HTTPError as exc:
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
