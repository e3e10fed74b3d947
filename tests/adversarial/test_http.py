"""The HTTP front door attacked from outside: a real `banksim serve` on a free loopback port.

What an outsider tried, and what the contract (README "Control API", contracts/error_codes.yaml
1011, 1030-1033, 1005) says must happen:

* a huge body on the control API without the token: refused (401, 1030) before the server
  reads it, and the server's memory does not grow by the body -> test_an_unauthenticated_huge_body_*
  (with the token, or without one on loopback, a too large JSON body is 413, 1011, early;
  a hand-over above ``sftp.max_upload_bytes`` 413, 4011; an unsigned bank API body above
  ``security.max_body_bytes`` 413, 1011)
* a request stamped in the future, replayed after "arrival + window" but while its
  timestamp is still fresh: refused as a replay (1005) -> test_a_future_stamped_request_*
* a web page's cross-site ``POST /_admin/reset`` (``text/plain``, foreign ``Origin``) and a
  cross-site file hand-over: refused (403, 1032), nothing reset or stored; a same-origin
  ``text/plain`` body is still not JSON (415, 1033)      -> test_cross_site_*
* a DNS-rebinding page (any ``Host``) reading ``/_admin/profile`` with every secret, or the
  bank API: refused (421, 1031)                          -> test_a_foreign_host_*
* a 1-character admin token: the server does not start  -> test_a_short_admin_token_*
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    ROOT,
    BankServer,
    SignedClient,
    _subprocess_env,
    start_server,
)

TOKEN = "adversarial-http-token-0042"
BIG = 64 * 1024 * 1024
SECRET = "banksim-dev-secret"  # the packaged profile's development secret


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BankServer]:
    """The default mode: loopback, no admin token."""
    server = start_server(tmp_path_factory.mktemp("open"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BankServer]:
    server = start_server(tmp_path_factory.mktemp("token"), admin_token=TOKEN)
    yield server
    server.stop()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@dataclass
class RawAnswer:
    status: int
    body: dict[str, Any]
    sent: int  # body bytes the server let us send before it answered


def stream_request(port: int, method: str, path: str, *, total: int,
                   headers: dict[str, str], chunked: bool = False) -> RawAnswer:
    """Send ``total`` body bytes (declared, or chunked) while watching for an early answer.

    Stops sending as soon as the server answers (or closes): ``sent`` is what it had let
    through by then, socket buffers included.
    """
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    block = b"{" + b" " * (65536 - 1)
    piece = (b"%x\r\n" % len(block)) + block + b"\r\n" if chunked else block
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(head)
        sock.setblocking(False)
        sent, pending = 0, b""
        deadline = time.monotonic() + 120
        while sent < total and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 5)
            if readable:
                break
            if not writable:
                continue
            if not pending:
                pending = piece
            try:
                n = sock.send(pending)
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            pending = pending[n:]
            sent += n
        sock.setblocking(True)
        sock.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < _expected_length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    head_text, _, body = data.partition(b"\r\n\r\n")
    status = int(head_text.split(b" ", 2)[1])
    return RawAnswer(status, json.loads(body[:_expected_length(data) - len(head_text) - 4]), sent)


def _expected_length(data: bytes) -> int:
    head, sep, _ = data.partition(b"\r\n\r\n")
    if not sep:
        return 1 << 62
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + 4 + int(value)
    return 1 << 62


# -- bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_an_unauthenticated_huge_body_is_refused_before_it_is_read(
        token_server: BankServer, chunked: bool) -> None:
    before = rss_bytes(token_server.process.pid)
    answer = stream_request(token_server.port, "PUT", "/_admin/profile", total=BIG,
                            headers={"Content-Type": "application/json"}, chunked=chunked)
    grown = rss_bytes(token_server.process.pid) - before
    assert (answer.status, answer.body["code"]) == (401, "1030")
    # Answered on the headers: what got through is socket buffers, not the 64 MiB.
    assert answer.sent < BIG // 2, f"the server took {answer.sent} bytes before answering"
    assert grown < 32 * 1024 * 1024, f"RSS grew by {grown} bytes"
    assert token_server.admin.get("/clock").status_code == 200  # and it goes on serving


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_a_huge_control_body_is_refused_early_with_or_without_a_token(
        open_server: BankServer, token_server: BankServer, chunked: bool) -> None:
    for server, headers in ((open_server, {}), (token_server, {"X-Admin-Token": TOKEN})):
        before = rss_bytes(server.process.pid)
        answer = stream_request(server.port, "PUT", "/_admin/profile", total=BIG, chunked=chunked,
                                headers={"Content-Type": "application/json", **headers})
        grown = rss_bytes(server.process.pid) - before
        assert (answer.status, answer.body["code"]) == (413, "1011")
        assert answer.sent < BIG // 2
        assert grown < 32 * 1024 * 1024, f"RSS grew by {grown} bytes"


def test_a_huge_unsigned_bank_api_body_is_refused_at_the_body_limit(open_server: BankServer) -> None:
    """The bank API reads a body before checking its signature (the signature covers it),
    so the limit is what bounds an anonymous sender: 1011 at ``security.max_body_bytes``."""
    for chunked in (False, True):
        before = rss_bytes(open_server.process.pid)
        answer = stream_request(open_server.port, "POST", "/api/v1/accounts/open", total=BIG,
                                headers={"Content-Type": "application/json"}, chunked=chunked)
        grown = rss_bytes(open_server.process.pid) - before
        assert (answer.status, answer.body["code"]) == (413, "1011")
        assert answer.sent < BIG // 2
        assert grown < 32 * 1024 * 1024, f"RSS grew by {grown} bytes"


def test_a_huge_hand_over_is_refused_at_the_upload_limit(open_server: BankServer) -> None:
    limit = 1024 * 1024
    admin = open_server.admin
    default = admin.get("/profile").json()["sftp"]["max_upload_bytes"]
    assert admin.patch("/profile", json={"sftp": {"max_upload_bytes": limit}}).status_code == 200
    try:
        for chunked in (False, True):
            answer = stream_request(open_server.port, "POST", "/_admin/files/demo-platform/"
                                    "batches/DF_DEMO01_20260105_77.txt", total=BIG, chunked=chunked,
                                    headers={"Content-Type": "application/octet-stream"})
            assert (answer.status, answer.body["code"]) == (413, "4011")
            assert answer.sent < BIG // 2
    finally:
        admin.patch("/profile", json={"sftp": {"max_upload_bytes": default}})
    listing = open_server.admin.get("/files/demo-platform").json()
    assert not any("_77" in f["name"] for files in listing.values() for f in files)


# -- replays -----------------------------------------------------------------------------


def test_a_future_stamped_request_cannot_be_replayed_while_its_timestamp_is_fresh(
        open_server: BankServer) -> None:
    """Window W: stamped now + W, a request is fresh until arrival + 2W. Replayed after
    arrival + W + 1 s (when the old memory had forgotten it), it must still be 1005."""
    window = 2
    admin = open_server.admin
    assert admin.patch("/profile", json={"security": {"signature_window_seconds": window}}
                       ).status_code == 200
    try:
        while not 0.02 < time.time() % 1 < 0.3:  # start early in a second: no boundary race
            time.sleep(0.01)
        second = int(time.time())
        stamp, nonce = second + window, "future-stamped-0001"
        with SignedClient(open_server.url, secret=SECRET) as client:
            first = client.query_account("6231880000000000000", timestamp=stamp, nonce=nonce)
            assert first.json()["code"] != "1005" and first.status_code != 401, first.text
            time.sleep(max(0.0, second + window + 1.4 - time.time()))
            replay = client.query_account("6231880000000000000", timestamp=stamp, nonce=nonce)
        assert (replay.status_code, replay.json()["code"]) == (401, "1005"), replay.text
    finally:
        admin.patch("/profile", json={"security": {"signature_window_seconds": 300}})


# -- browsers ----------------------------------------------------------------------------


def test_cross_site_reset_and_hand_over_are_refused(open_server: BankServer) -> None:
    admin = open_server.admin
    moved = admin.post("/clock/advance", json={"by": "1h"}).json()["clock"]["now"]
    evil = {"Origin": "http://attacker.example"}
    attempts = [
        admin.post("/reset", content=b"x", headers={**evil, "Content-Type": "text/plain"}),
        admin.post("/reset", headers=evil),  # a no-cors fetch with no body at all
        admin.post("/reset", headers={"Origin": "null"}),  # a sandboxed frame
        admin.post("/files/demo-platform/batches/DF_DEMO01_20260105_55.txt", content=b"H|x\n",
                   headers={**evil, "Content-Type": "multipart/form-data; boundary=x"}),
        admin.post("/files/demo-platform/batches/DF_DEMO01_20260105_55.txt", content=b"H|x\n",
                   headers={**evil, "Content-Type": "application/octet-stream"}),
    ]
    assert [(r.status_code, r.json()["code"]) for r in attempts] == [(403, "1032")] * 5
    same = {"Origin": open_server.url}  # the server's own page (Swagger UI): not JSON still
    not_json = [
        admin.post("/reset", content=b"x", headers={**same, "Content-Type": "text/plain"}),
        admin.post("/reset", content=b"a=1",
                   headers={"Content-Type": "application/x-www-form-urlencoded"}),
        admin.post("/files/demo-platform/batches/DF_DEMO01_20260105_55.txt", content=b"H|x\n",
                   headers={"Content-Type": "text/plain"}),
        admin.post("/files/demo-platform/batches/DF_DEMO01_20260105_55.txt", content=b"H|x\n"),
    ]
    assert [(r.status_code, r.json()["code"]) for r in not_json] == [(415, "1033")] * 4
    assert admin.get("/clock").json()["now"] == moved  # never reset
    listing = admin.get("/files/demo-platform").json()
    assert not any("_55" in f["name"] for files in listing.values() for f in files)
    # What tools and the server's own docs page send still works.
    assert admin.post("/clock/advance", json={"by": "1m"}, headers=same).status_code == 200
    assert admin.post("/reset").status_code == 200


def test_a_foreign_host_is_refused_everywhere_on_loopback(
        open_server: BankServer, token_server: BankServer) -> None:
    for server in (open_server, token_server):
        port = server.port
        for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1.nip.io:{port}",
                     f"10.0.0.8:{port}"):
            for path in ("/_admin/profile", "/health", "/api/v1/accounts/6231880000000000000",
                         "/wechat/v3/pay/transactions/out-trade-no/TOPUP-0001?mchid=1900000109"):
                r = server.admin.get(f"{server.url}{path}", headers={"Host": host})
                assert (r.status_code, r.json()["code"]) == (421, "1031"), (host, path, r.text)
                assert SECRET not in r.text
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}",
                     f"app.localhost:{port}", "127.0.0.2"):
            assert server.admin.get("/profile", headers={"Host": host}).status_code == 200, host


def test_the_cli_still_talks_to_a_loopback_server(open_server: BankServer) -> None:
    shown = subprocess.run([sys.executable, "-m", "simulator.cli", "clock", "show",
                            "--url", open_server.url], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "business_date" in shown.stdout


# -- the admin token ---------------------------------------------------------------------


@pytest.mark.parametrize("token", ["x", "fifteen-chars!!"])
def test_a_short_admin_token_stops_the_server_from_starting(tmp_path: Path, token: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "serve", "--ephemeral", "--http-port", "0",
         "--sftp-port", "-1", "--admin-token", token],
        cwd=ROOT, capture_output=True, text=True, timeout=15, env=_subprocess_env(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("banksim: "), result.stderr
    assert "at least 16 characters" in lines[0]
    assert "fifteen-chars!!" not in lines[0]  # a refused token is still not printed
