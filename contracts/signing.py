"""Request signing shared by the bank API and every platform client.

A platform signs each request with its app secret::

    string_to_sign = METHOD + "\\n" + PATH_AND_QUERY + "\\n" + TIMESTAMP + "\\n" + NONCE + "\\n" + BODY
    signature      = lowercase hex of HMAC-SHA256(secret, string_to_sign as UTF-8)

and sends ``X-App-Id``, ``X-Timestamp`` (Unix seconds, wall clock), ``X-Nonce`` (8 to 64
characters of ``[A-Za-z0-9_-]``, never reused) and ``X-Signature``. ``PATH_AND_QUERY`` is
the request path plus ``?query`` when there is one, exactly as sent; ``BODY`` is the raw
body bytes (empty for GET).

Example::

    >>> headers = sign_headers("demo-platform", "s3cret", "GET", "/api/v1/accounts/1", b"",
    ...                        timestamp=1700000000, nonce="n0nce-0001")
    >>> sorted(headers)
    ['X-App-Id', 'X-Nonce', 'X-Signature', 'X-Timestamp']
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

HEADER_APP_ID = "X-App-Id"
HEADER_TIMESTAMP = "X-Timestamp"
HEADER_NONCE = "X-Nonce"
HEADER_SIGNATURE = "X-Signature"


def string_to_sign(method: str, path_and_query: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    head = f"{method.upper()}\n{path_and_query}\n{timestamp}\n{nonce}\n".encode()
    return head + body


def signature(secret: str, method: str, path_and_query: str, timestamp: str, nonce: str,
              body: bytes) -> str:
    message = string_to_sign(method, path_and_query, timestamp, nonce, body)
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign_headers(app_id: str, secret: str, method: str, path_and_query: str, body: bytes,
                 *, timestamp: int | None = None, nonce: str | None = None) -> dict[str, str]:
    """The four signing headers for one request."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_hex(16)
    return {
        HEADER_APP_ID: app_id,
        HEADER_TIMESTAMP: ts,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: signature(secret, method, path_and_query, ts, nonce, body),
    }
