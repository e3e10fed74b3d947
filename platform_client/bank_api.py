"""The bank's real-time API as the platform calls it: signed requests, safe retries.

Every mutating call carries the platform's ``request_serial``. When the answer is lost (a
timeout, a dropped connection) or the bank is busy (3028) or failed (9000), the client asks
for the stored answer by serial and, when the bank never got the request (1021), sends it
again with the SAME serial; the bank answers a serial once, so this never opens two
accounts or pays a refund twice.

Example::

    api = BankApi(config)
    account = api.open_account("OPEN-u1", identity)     # dict: the account
    api.query_account(account["account_no"])["balance"]  # '0.00'
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from contracts.signing import sign_headers
from platform_client.config import ClientConfig
from platform_client.errors import BankApiError, BankUnavailable

RETRYABLE_CODES = frozenset({"3028", "9000"})


class BankApi:
    """A blocking client of ``contracts/bank-api.openapi.yaml``."""

    def __init__(self, config: ClientConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self.http = httpx.Client(base_url=config.bank_url, timeout=config.http_timeout_s,
                                 transport=transport)

    def close(self) -> None:
        self.http.close()

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
        data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        headers = sign_headers(self.config.app_id, self.config.app_secret, method, path, data)
        if data:
            headers["Content-Type"] = "application/json"
        return self.http.request(method, path, content=data, headers=headers)

    @staticmethod
    def _answer(response: httpx.Response) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = response.json()
        except ValueError:
            raise BankApiError("9000", f"not a JSON answer (HTTP {response.status_code})",
                               response.status_code) from None
        return answer

    def _data(self, response: httpx.Response) -> dict[str, Any]:
        answer = self._answer(response)
        code = str(answer.get("code"))
        if code != "0000":
            message = str(answer.get("detail") or answer.get("message") or "")
            raise BankApiError(code, message, response.status_code)
        data: dict[str, Any] = answer["data"]
        return data

    def _mutate(self, path: str, body: dict[str, Any], query_path: str) -> dict[str, Any]:
        """POST with safe retries by serial (see the module docstring)."""
        last = "no attempt made"
        needs_query = False
        for _ in range(max(1, self.config.http_attempts)):
            if needs_query:
                try:
                    response = self._send("GET", query_path, None)
                except httpx.HTTPError as exc:
                    last = f"query by serial failed: {exc!r}"
                    continue
                answer = self._answer(response)
                if answer.get("code") != "1021":  # the bank has it: its stored answer is final
                    if str(answer.get("code")) in RETRYABLE_CODES:
                        last = f"query answered {answer.get('code')}"
                        continue
                    return self._data(response)
            try:
                response = self._send("POST", path, body)
            except httpx.HTTPError as exc:
                # Timeout or lost response: the bank may have applied it; ask before resending.
                last = f"{type(exc).__name__}: {exc}"
                needs_query = True
                continue
            answer = self._answer(response)
            if str(answer.get("code")) in RETRYABLE_CODES:
                last = f"bank answered {answer.get('code')}"
                needs_query = False
                continue
            return self._data(response)
        raise BankUnavailable(f"{path} serial {body.get('request_serial')}: no answer after "
                              f"{self.config.http_attempts} attempts ({last})")

    def _get(self, path: str) -> dict[str, Any]:
        last = ""
        for _ in range(max(1, self.config.http_attempts)):
            try:
                response = self._send("GET", path, None)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if str(self._answer(response).get("code")) in RETRYABLE_CODES:
                last = "bank busy"
                continue
            return self._data(response)
        raise BankUnavailable(f"GET {path}: no answer ({last})")

    def open_account(self, serial: str, identity: dict[str, str]) -> dict[str, Any]:
        """Open a Class III account (idempotent by ``serial``); the account's data."""
        return self._mutate("/api/v1/accounts/open", {"request_serial": serial, **identity},
                            f"/api/v1/accounts/openings/{serial}")

    def query_account(self, account_no: str) -> dict[str, Any]:
        return self._get(f"/api/v1/accounts/{account_no}")

    def refund(self, serial: str, account_no: str, amount: str, memo: str = "") -> dict[str, Any]:
        """Pay ``amount`` (yuan) out of a Class III account to its bound card."""
        body = {"request_serial": serial, "account_no": account_no, "amount": amount}
        if memo:
            body["memo"] = memo
        return self._mutate("/api/v1/refunds", body, f"/api/v1/refunds/{serial}")
