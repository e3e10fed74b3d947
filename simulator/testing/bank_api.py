"""The platform's side of the wire, for tests: a signed bank API client and an SFTP session.

:class:`BankApiClient` signs every request with :func:`contracts.signing.sign_headers`
over the exact bytes it sends and hands back the raw ``httpx.Response`` (tests look at
status codes, bank codes and headers such as ``X-Idempotent-Replay``).
:class:`SftpSession` is a blocking facade over one asyncssh SFTP session with its own
event loop, so synchronous steps can upload batch files the documented way (temporary
name, then rename) and read return files. Both are bound to a :class:`SimulatorHandle`.

Example::

    with BankApiClient.for_handle(handle) as api:
        answer = api.open_account("OPEN-1", {"name": "张三", ...})
        account_no = answer.json()["data"]["account_no"]
    with SftpSession.for_handle(handle) as sftp:
        sftp.upload("/upload/batches/DF_DEMO01_20260105_1.txt", data)
        sftp.listdir("/download/returns")
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any, TypeVar

import asyncssh
import httpx

from contracts.signing import sign_headers
from simulator.testing.handle import SimulatorHandle

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 30.0
SFTP_TIMEOUT_S = 30.0

BATCHES = "/upload/batches"
IMAGES = "/upload/images"
RETURNS = "/download/returns"
STATEMENTS = "/download/statements"


class BankApiClient:
    """The bank's real-time API as one platform (``app_id`` + ``secret``), signed."""

    def __init__(self, base_url: str, *, app_id: str, secret: str,
                 timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.app_id = app_id
        self.secret = secret
        self.http = httpx.Client(base_url=base_url, timeout=timeout)

    @classmethod
    def for_handle(cls, handle: SimulatorHandle, *, timeout: float = DEFAULT_TIMEOUT_S) -> BankApiClient:
        return cls(handle.http_url, app_id=handle.app_id, secret=handle.secret, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> BankApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, body: Any = None, *,
                timeout: float | None = None) -> httpx.Response:
        """Send ``body`` as JSON (UTF-8, unescaped) with the four signing headers."""
        data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        headers = sign_headers(self.app_id, self.secret, method, path, data)
        if data:
            headers["Content-Type"] = "application/json"
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        return self.http.request(method, path, content=data, headers=headers, **extra)

    # -- operations (contracts/bank-api.openapi.yaml) ------------------------------------

    def open_account(self, serial: str, identity: dict[str, str], *,
                     timeout: float | None = None) -> httpx.Response:
        """``identity``: name, id_number, mobile, bound_card_number, bound_card_kind."""
        return self.request("POST", "/api/v1/accounts/open", {"request_serial": serial, **identity},
                            timeout=timeout)

    def query_opening(self, serial: str) -> httpx.Response:
        return self.request("GET", f"/api/v1/accounts/openings/{serial}")

    def query_account(self, account_no: str) -> httpx.Response:
        return self.request("GET", f"/api/v1/accounts/{account_no}")

    def freeze(self, account_no: str, serial: str, reason: str = "") -> httpx.Response:
        return self.request("POST", f"/api/v1/accounts/{account_no}/freeze",
                            {"request_serial": serial, "reason": reason})

    def unfreeze(self, account_no: str, serial: str) -> httpx.Response:
        return self.request("POST", f"/api/v1/accounts/{account_no}/unfreeze", {"request_serial": serial})

    def close_account(self, account_no: str, serial: str) -> httpx.Response:
        return self.request("POST", f"/api/v1/accounts/{account_no}/close", {"request_serial": serial})

    def refund(self, serial: str, account_no: str, amount: str, memo: str = "", *,
               timeout: float | None = None) -> httpx.Response:
        """Pay ``amount`` (yuan, ``"12.30"``) from a Class III account to its bound card."""
        body = {"request_serial": serial, "account_no": account_no, "amount": amount}
        if memo:
            body["memo"] = memo
        return self.request("POST", "/api/v1/refunds", body, timeout=timeout)

    def query_refund(self, serial: str) -> httpx.Response:
        return self.request("GET", f"/api/v1/refunds/{serial}")


class SftpSession:
    """One SFTP session as the platform, driven synchronously (its own event loop).

    Every call is bounded by ``timeout`` seconds. Not thread-safe: one per test.
    """

    def __init__(self, host: str, port: int, *, username: str, password: str | None,
                 timeout: float = SFTP_TIMEOUT_S) -> None:
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        try:
            self.conn: asyncssh.SSHClientConnection = self._run(asyncssh.connect(
                host, port, username=username, password=password, known_hosts=None,
                client_keys=None, agent_path=None, config=None, gss_host=None))
            self.client: asyncssh.SFTPClient = self._run(self.conn.start_sftp_client())
        except BaseException:
            self.loop.close()
            raise

    @classmethod
    def for_handle(cls, handle: SimulatorHandle, *, timeout: float = SFTP_TIMEOUT_S) -> SftpSession:
        if handle.sftp_port is None:
            raise RuntimeError(f"the simulator at {handle.http_url} runs without SFTP")
        return cls(handle.sftp_host or "127.0.0.1", handle.sftp_port, username=handle.sftp_username,
                   password=handle.sftp_password, timeout=timeout)

    def _run(self, aw: Awaitable[T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(aw, self.timeout))

    def close(self) -> None:
        try:
            self.client.exit()
            self.conn.close()
            self._run(self.conn.wait_closed())
        finally:
            self.loop.close()

    def __enter__(self) -> SftpSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _write(self, path: str, data: bytes) -> None:
        async with self.client.open(path, "wb") as fh:
            await fh.write(data)

    def write(self, path: str, data: bytes) -> None:
        """Write ``path`` under its final name (the bank takes it when it is closed)."""
        self._run(self._write(path, data))

    def upload(self, path: str, data: bytes) -> None:
        """The documented way: write ``<path>.part``, then rename it to ``path``."""
        self.write(path + ".part", data)
        self.rename(path + ".part", path)

    def rename(self, old: str, new: str) -> None:
        self._run(self.client.rename(old, new))

    async def _read(self, path: str) -> bytes:
        async with self.client.open(path, "rb") as fh:
            data: bytes = await fh.read()
            return data

    def read(self, path: str) -> bytes:
        return self._run(self._read(path))

    def listdir(self, path: str) -> list[str]:
        """File names in ``path``, sorted, without ``.`` and ``..``."""
        names = self._run(self.client.listdir(path))
        return sorted(n for n in names if n not in (".", ".."))

    def exists(self, path: str) -> bool:
        return bool(self._run(self.client.exists(path)))
