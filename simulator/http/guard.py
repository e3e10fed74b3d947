"""What a request must be before anything reads its body: the server's outermost gate.

A browser is the attacker this module has in mind. A web page the user happens to open can
send requests to ``127.0.0.1:8600`` (cross-site ``POST`` with ``text/plain`` or no body,
form uploads) and, through DNS rebinding, read answers under its own name. So, in order,
with nothing of the body read yet:

1. ``Host`` (only when the server listens on a loopback address, the default): a loopback
   name or address (``localhost``, ``*.localhost``, ``127.0.0.0/8``, ``[::1]``) or the
   configured ``--host``, any port. Anything else is 421 ``1031``. Off loopback the
   server has an admin token (``banksim serve`` refuses to start without one) and is
   reached by names it cannot know (container names, mapped ports), so no Host check.
2. ``Origin``, when sent: the same ``host[:port]`` as ``Host`` (a same-origin request);
   ``null`` or another origin is 403 ``1032``.
3. Under ``/_admin``: the admin token when there is one (401 ``1030``; the docs pages are
   public) *before* any byte of the body is read; then, on ``POST``/``PUT``/``PATCH``/
   ``DELETE``, the media type (415 ``1033``): JSON (or no body at all) on every route but
   the file hand-over, which takes ``application/octet-stream`` only; then the size: a
   JSON body above :data:`CONTROL_MAX_BODY_BYTES` is 413 ``1011``, a hand-over above
   ``sftp.max_upload_bytes`` 413 ``4011`` (both at once when ``Content-Length`` says so,
   else as soon as the count passes the limit).

JSON and ``application/octet-stream`` are not CORS-safelisted types, and the admin token is
a custom header, so a cross-site page cannot send them without a preflight the server never
approves; the Origin check covers what needs no preflight (no body, ``text/plain``).

Refusals say ``Connection: close``: the server stops reading a body it will not take.

Example::

    app.add_middleware(RequestGuard, bank=bank, admin_token=token, bind_host="127.0.0.1")
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Final

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simulator.bank import Bank
from simulator.errors import (
    AdminTokenRequired,
    BankError,
    BodyTooLarge,
    CrossOriginRefused,
    FileTooLarge,
    HostNotAllowed,
    UnsupportedMediaType,
)
from simulator.http.asgi import replaying

ADMIN_TOKEN_MIN_LENGTH: Final = 16
# JSON bodies of the control API; the largest is a whole profile (the packaged one is ~9 KB).
CONTROL_MAX_BODY_BYTES: Final = 1024 * 1024
ADMIN_PREFIX: Final = "/_admin"
# The control API's own documentation: its shape, no data (served without the token).
_PUBLIC_ADMIN_PATHS = frozenset({"/_admin/docs", "/_admin/docs/oauth2-redirect",
                                 "/_admin/openapi.json", "/_admin/redoc"})
_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_UPLOAD_PREFIX = "/_admin/files/"
_OCTET_STREAM = b"application/octet-stream"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost."})
_WATCHED = frozenset({b"host", b"origin", b"x-admin-token", b"content-type", b"content-length"})


def check_admin_token(token: str | None) -> None:
    """Raise ValueError for a token too short to stand against guessing (None: no token)."""
    if token is not None and len(token) < ADMIN_TOKEN_MIN_LENGTH:
        raise ValueError(f"the admin token must be at least {ADMIN_TOKEN_MIN_LENGTH} characters "
                         f"(got {len(token)}); e.g. python -c 'import secrets; "
                         "print(secrets.token_urlsafe(24))'")


def is_loopback_host(host: str) -> bool:
    """``localhost``, a name under ``.localhost`` (RFC 6761) or a loopback address."""
    name = host.lower()
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def _split_authority(authority: str) -> tuple[str, str] | None:
    """``host[:port]`` -> (lowercase host, port or ""); None when it is not one."""
    authority = authority.strip().lower()
    if authority.startswith("["):  # [v6]:port
        end = authority.find("]")
        if end < 0:
            return None
        host, rest = authority[:end + 1], authority[end + 1:]
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:]
    else:
        host, _, port = authority.partition(":")
    if not host or (port and not port.isdigit()):
        return None
    return host, port


def _origin_authority(origin: str) -> tuple[str, str] | None:
    """The (host, port) of an ``Origin`` value, default ports dropped; None if not http(s)."""
    scheme, sep, rest = origin.strip().lower().partition("://")
    if not sep or scheme not in ("http", "https") or "/" in rest:
        return None
    parts = _split_authority(rest)
    if parts is None:
        return None
    host, port = parts
    if (scheme, port) in (("http", "80"), ("https", "443")):
        port = ""
    return host, port


class RequestGuard:
    """Pure ASGI: Host, Origin, then the control API's token, media type and size."""

    def __init__(self, app: ASGIApp, bank: Bank, admin_token: str | None = None,
                 bind_host: str | None = None) -> None:
        """``bind_host``: the address the server listens on; a loopback one turns the Host
        check on (None: an in-process app, no Host check)."""
        check_admin_token(admin_token)
        self.app = app
        self.bank = bank
        self.token = admin_token.encode() if admin_token is not None else None
        # Listening on loopback, the configured --host is itself a loopback name or address,
        # so "a loopback name" is the whole allow-list.
        self.check_host = bind_host is not None and is_loopback_host(bind_host)
        # Host header -> allowed. Parsing an address costs more than the rest of the guard,
        # and clients send the same few values; bounded, since the values are the client's.
        self._hosts: dict[bytes, bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # One pass, one dict lookup a header: this runs in front of every request. The
        # first occurrence counts, as for the framework's ``Headers.get`` behind it, so a
        # duplicated header cannot show this gate one value and the route another.
        seen: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in _WATCHED and name not in seen:
                seen[name] = value
        host_header = seen.get(b"host")
        origin = seen.get(b"origin")
        if (self.check_host and host_header is not None and not self._host_ok(host_header)) or (
                origin is not None):
            host = host_header.decode("latin-1") if host_header is not None else ""
            refusal = self._host_and_origin(host, origin)
            if refusal is not None:
                await _refuse(send, refusal)
                return
        path: str = scope["path"]
        if not (path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        token = seen.get(b"x-admin-token")
        public = method in ("GET", "HEAD") and path in _PUBLIC_ADMIN_PATHS
        if self.token is not None and not public and not (
                token is not None and hmac.compare_digest(token, self.token)):
            await _refuse(send, AdminTokenRequired())
            return
        if method not in _MUTATING:
            await self.app(scope, receive, send)
            return
        content_type = seen.get(b"content-type")
        declared = _declared_length(seen.get(b"content-length"))
        if path.startswith(_UPLOAD_PREFIX):
            await self._upload(scope, receive, send, content_type, declared)
            return
        await self._control_json(scope, receive, send, content_type, declared)

    def _host_ok(self, host_header: bytes) -> bool:
        known = self._hosts.get(host_header)
        if known is None:
            parts = _split_authority(host_header.decode("latin-1"))
            known = parts is not None and is_loopback_host(parts[0])
            if len(self._hosts) >= 256:
                self._hosts.clear()
            self._hosts[host_header] = known
        return known

    def _host_and_origin(self, host: str, origin: bytes | None) -> BankError | None:
        if self.check_host and host and not self._host_ok(host.encode("latin-1")):
            return HostNotAllowed(f"Host {host!r} is not this server's name: use a loopback "
                                  "name or address (localhost, 127.0.0.1, [::1])")
        if origin is not None:
            text = origin.decode("latin-1")
            seen = _origin_authority(text)
            own = _split_authority(host)
            if seen is None or own is None or seen != (own[0], own[1]):
                return CrossOriginRefused(f"Origin {text!r} is not this server ({host!r}): "
                                          "cross-site requests are refused")
        return None

    async def _upload(self, scope: Scope, receive: Receive, send: Send,
                      content_type: bytes | None, declared: int | None) -> None:
        if content_type is None or content_type.split(b";")[0].strip().lower() != _OCTET_STREAM:
            await _refuse(send, UnsupportedMediaType(
                "a file hand-over takes Content-Type: application/octet-stream"))
            return
        limit = self.bank.profile.sftp.max_upload_bytes
        if declared is not None and declared > limit:
            await _refuse(send, FileTooLarge(f"upload exceeds {limit} bytes"))
            return
        # The route streams the body to disk and stops at the same limit.
        await self.app(scope, receive, send)

    async def _control_json(self, scope: Scope, receive: Receive, send: Send,
                            content_type: bytes | None, declared: int | None) -> None:
        has_body = declared != 0 and not (declared is None and not _chunked(scope))
        if content_type is not None and not _is_json(content_type):
            await _refuse(send, UnsupportedMediaType(
                "control API bodies are JSON: send Content-Type: application/json"))
            return
        if has_body and content_type is None:
            await _refuse(send, UnsupportedMediaType(
                "a control API body needs Content-Type: application/json"))
            return
        if not has_body:
            await self.app(scope, receive, send)
            return
        limit = CONTROL_MAX_BODY_BYTES
        too_large = BodyTooLarge(f"control API bodies are at most {limit} bytes")
        if declared is not None and declared > limit:
            await _refuse(send, too_large)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _refuse(send, too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, replaying(b"".join(chunks), receive), send)


def _declared_length(value: bytes | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:  # the server's parser refuses these before the app sees them
        return None


def _chunked(scope: Scope) -> bool:
    return any(name == b"transfer-encoding" for name, _ in scope["headers"])


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";")[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/")
                                            and media.endswith(b"+json"))


async def _refuse(send: Send, err: BankError) -> None:
    payload = orjson.dumps(err.as_dict())
    start: Message = {"type": "http.response.start", "status": err.entry.http, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close")]}
    await send(start)
    await send({"type": "http.response.body", "body": payload})
