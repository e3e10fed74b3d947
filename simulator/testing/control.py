"""A typed client of the simulator's control API (``/_admin``): scenario set-up and inspection.

Every method is one control call; answers are the JSON the control API documents (at
``/_admin/docs``). A refused call raises :class:`ControlError` with the bank's code, so a
step that sets up a scenario never goes on with a half-built bank.

Example::

    with ControlClient.for_handle(handle) as control:
        control.reset()
        control.patch_profile({"bank": {"open_active": True}})
        control.deposit("98010078801000001", "1000.00")
        control.advance(by="25m")
        assert control.invariants()["ok"]
"""

from __future__ import annotations

from typing import Any, cast

import httpx

from simulator.testing.handle import SimulatorHandle

OCTET_STREAM = "application/octet-stream"  # what a file hand-over must be sent as

DEFAULT_TIMEOUT_S = 30.0

Json = dict[str, Any]


class ControlError(RuntimeError):
    """The control API refused a call: ``status`` (HTTP), ``code`` (the bank's code table)."""

    def __init__(self, method: str, path: str, status: int, code: str | None, message: str) -> None:
        super().__init__(f"{method} /_admin{path}: HTTP {status} code {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ControlClient:
    """The control API of one simulator over HTTP (an ``httpx.Client`` underneath).

    ``admin_token`` is sent as ``X-Admin-Token`` when the simulator needs one.
    """

    def __init__(self, admin_url: str, *, admin_token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S) -> None:
        headers = {"X-Admin-Token": admin_token} if admin_token else {}
        self.http = httpx.Client(base_url=admin_url.rstrip("/"), headers=headers, timeout=timeout)

    @classmethod
    def for_handle(cls, handle: SimulatorHandle, *, timeout: float = DEFAULT_TIMEOUT_S) -> ControlClient:
        """The control API of the simulator ``handle`` points at."""
        return cls(handle.admin_url, admin_token=handle.admin_token, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------

    def call(self, method: str, path: str, *, json: Any = None, content: bytes | None = None,
             params: dict[str, Any] | None = None) -> Any:
        """One control call; the decoded JSON answer, or :class:`ControlError`.

        Raw ``content`` (a file hand-over) goes as ``application/octet-stream``, the only
        type the control API takes for it."""
        clean = {k: v for k, v in (params or {}).items() if v is not None} or None
        headers = {"Content-Type": OCTET_STREAM} if content is not None else None
        response = self.http.request(method, path, json=json, content=content, params=clean,
                                     headers=headers)
        if response.status_code != 200:
            code: str | None = None
            message = response.text
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict):
                code = body.get("code")
                message = str(body.get("detail") or body.get("message") or message)
            raise ControlError(method, path, response.status_code, code, message)
        return response.json()

    def _json(self, method: str, path: str, **kwargs: Any) -> Json:
        return cast(Json, self.call(method, path, **kwargs))

    def _list(self, method: str, path: str, **kwargs: Any) -> list[Json]:
        return cast(list[Json], self.call(method, path, **kwargs))

    # -- lifecycle and clock ----------------------------------------------------------

    def health(self) -> bool:
        """True when the simulator answers ``/health`` (beside ``/_admin``, not under it)."""
        root = str(self.http.base_url).rstrip("/").removesuffix("/_admin")
        try:
            return self.http.get(root + "/health").status_code == 200
        except httpx.TransportError:
            return False

    def reset(self) -> Json:
        """Forget all state; the clock goes back to the profile's start."""
        return self._json("POST", "/reset")

    def clock(self) -> Json:
        """``now``, ``business_date``, ``mode`` and the next due job."""
        return self._json("GET", "/clock")

    def advance(self, *, by: str | None = None, to: str | None = None) -> Json:
        """Move the clock by a duration (``"25m"``) or to an instant (``"2026-01-06T10:00"``)."""
        return self._json("POST", "/clock/advance", json={"by": by, "to": to})

    def next_business_day(self, at: str | None = None) -> Json:
        """To the next day cutover, or to ``at`` (``"10:00"``) on the next business day."""
        return self._json("POST", "/clock/next-business-day", json={"at": at} if at else None)

    def set_mode(self, mode: str) -> Json:
        """``manual``, ``realtime`` or ``accelerated:N``."""
        return self._json("PUT", "/clock/mode", json={"mode": mode})

    def jobs(self) -> list[Json]:
        return self._list("GET", "/jobs")

    # -- profile -----------------------------------------------------------------------

    def profile(self) -> Json:
        return self._json("GET", "/profile")

    def put_profile(self, profile: Json) -> Json:
        """Replace the whole profile (validated by the simulator)."""
        return self._json("PUT", "/profile", json=profile)

    def patch_profile(self, patch: Json) -> Json:
        """A JSON merge patch over the running profile (lists are replaced whole)."""
        return self._json("PATCH", "/profile", json=patch)

    # -- accounts ----------------------------------------------------------------------

    def accounts(self, *, kind: str | None = None, app_id: str | None = None,
                 limit: int = 500) -> list[Json]:
        return self._list("GET", "/accounts", params={"kind": kind, "app_id": app_id, "limit": limit})

    def account(self, account_no: str) -> Json:
        """The account with its postings, freeze flags, limits and identity."""
        return self._json("GET", f"/accounts/{account_no}")

    def activate(self, account_no: str) -> Json:
        """Approve the account's ID-card images by hand: PENDING_IMAGES -> ACTIVE."""
        return self._json("POST", f"/accounts/{account_no}/activate")

    def deposit(self, account_no: str, amount: str, memo: str = "") -> Json:
        """Money from outside the bank into an account; ``amount`` in yuan (``"100.00"``)."""
        return self._json("POST", f"/accounts/{account_no}/deposit", json={"amount": amount, "memo": memo})

    def freeze(self, account_no: str, reason: str = "") -> Json:
        """Freeze as the bank (not the platform)."""
        return self._json("POST", f"/accounts/{account_no}/freeze", json={"reason": reason})

    def unfreeze(self, account_no: str) -> Json:
        return self._json("POST", f"/accounts/{account_no}/unfreeze")

    def set_agreement(self, account_no: str, active: bool) -> Json:
        """Grant or revoke the withholding agreement (代扣协议)."""
        return self._json("POST", f"/accounts/{account_no}/agreement", json={"active": active})

    # -- batches and files ---------------------------------------------------------------

    def batches(self, app_id: str | None = None) -> list[Json]:
        return self._list("GET", "/batches", params={"app_id": app_id})

    def manifest(self, app_id: str, batch_no: str) -> Json:
        """Every record of a batch: result, code and what decided it."""
        return self._json("GET", f"/batches/{app_id}/{batch_no}")

    def force_process(self, app_id: str, batch_no: str) -> Json:
        return self._json("POST", f"/batches/{app_id}/{batch_no}/process")

    def force_return(self, app_id: str, batch_no: str) -> Json:
        return self._json("POST", f"/batches/{app_id}/{batch_no}/return")

    def rejections(self, app_id: str | None = None) -> list[Json]:
        return self._list("GET", "/rejections", params={"app_id": app_id})

    def files(self, app_id: str) -> dict[str, list[Json]]:
        """The platform's SFTP tree by area (``upload/batches``, ``download/returns``, ...)."""
        return cast(dict[str, list[Json]], self.call("GET", f"/files/{app_id}"))

    def hand_over(self, app_id: str, area: str, name: str, data: bytes) -> Json:
        """Give the bank a file as if uploaded over SFTP; ``area`` is images or batches."""
        return self._json("POST", f"/files/{app_id}/{area}/{name}", content=data)

    # -- checks -------------------------------------------------------------------------

    def invariants(self) -> Json:
        """``{"ok": bool, "violations": [...]}``: money conserved, balances, caps, limits."""
        return self._json("GET", "/invariants")

    def events(self, *, since_id: int = 0, kind: str | None = None, limit: int = 500,
               account: str | None = None, serial: str | None = None, batch: int | None = None,
               order: str | None = None, newest: bool = False) -> list[Json]:
        """The timeline after ``since_id``, oldest first (``newest``: the latest ``limit``).

        ``kind`` exact or a prefix ending in ``.``; ``account``, ``serial``, ``batch`` and
        ``order`` keep the events of that account, serial, batch number or WeChat order.
        """
        given = {"since_id": since_id, "kind": kind, "limit": limit, "account": account,
                 "serial": serial, "batch": batch, "order": order}
        params: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        if newest:
            params["newest"] = "true"
        return self._list("GET", "/events", params=params)
