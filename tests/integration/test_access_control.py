"""Access control of `banksim serve`, over real sockets: the whole list, in one place.

A real server subprocess (loopback, free ports) with two platforms, each with its own API
secret and SFTP user, and a small upload limit. What is guaranteed, and where it is tested:

SFTP logins (here, against the subprocess; the in-process server: tests/integration/test_sftp.py)
  * wrong password, unknown user, wrong key, another platform's key or password, a user
    without a password logging in with one, keyboard-interactive: all refused, and refusals
    go on the timeline as ``sftp.login_refused``            -> test_sftp_refuses_*
SFTP jail
  * a platform never reads, lists, writes, renames into or links to another platform's
    tree                                                   -> test_one_platform_cannot_reach_the_other
  * ``..`` and absolute-path escapes, symlink and hard-link creation: SFTP
    permission-denied or no-such-file, the host untouched, the session goes on
                                                           -> test_escapes_fail_with_an_sftp_status
  * path-traversal-looking *names* never leave the upload area
                                                           -> test_traversal_looking_names_stay_in_the_jail
    (unit level: tests/unit/test_sftp_jail.py, property tests of the path mapping)
  * an upload stops at ``sftp.max_upload_bytes``; nothing of it reaches the bank
                                                           -> test_an_oversized_upload_stops_at_the_limit
Bank API signatures (every operation of the contract, not only openings)
  * 1001 unsigned, 1002 unknown app id, 1003 mis-signed (wrong secret, another platform's
    secret, tampered body/path/query), 1004 stale or future timestamp, 1005 replayed nonce
                                                           -> test_every_operation_refuses_*
    (test_bank_api.py: the same codes for openings, and that nothing happened)
  * a platform cannot see or move another platform's accounts: test_bank_api.py
    ``test_another_platform_cannot_see_the_account``
Control API
  * with a token, every ``/_admin`` route refuses a missing or wrong token (401, 1030) and
    changes nothing                                        -> test_every_control_route_needs_the_token
  * ``banksim serve`` off loopback without a token refuses to start (exit 2, a message naming
    the host and ``--admin-token``), also for an empty token -> test_off_loopback_without_a_token_*
    The check runs before anything binds; no test listens off loopback.
  * the front door (token before the body, body limits, Host, Origin, media types, token
    length, future-stamped replays): tests/adversarial/test_http.py
Isolation of failures
  * one platform's malformed batch file leaves the bank serving every platform, and the
    bank starts again on that state      -> test_one_platforms_malformed_file_does_not_stop_*
Secrets in logs, the timeline and the state: tests/integration/test_secrets_not_logged.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import httpx
import pytest

from simulator.config import load_profile
from simulator.operations import OPERATIONS
from tests.integration.conftest import BankServer, SignedClient, start_server

pytestmark = pytest.mark.network

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 30.0
UPLOAD_LIMIT = 4096
TOKEN = "ac-token-for-tests-7f3a"
KEY_A = asyncssh.generate_private_key("ssh-ed25519")
KEY_B = asyncssh.generate_private_key("ssh-ed25519")
STRANGER_KEY = asyncssh.generate_private_key("ssh-ed25519")


@dataclass(frozen=True)
class Tenant:
    app_id: str
    secret: str
    username: str
    password: str | None
    key: asyncssh.SSHKey


A = Tenant("demo-platform", "ac-secret-a-123456", "alpha", "alpha-password-1", KEY_A)
B = Tenant("other-platform", "ac-secret-b-654321", "bravo", None, KEY_B)  # key only


def _profile() -> dict[str, Any]:
    base = load_profile(None).as_dict()["platforms"][0]
    first = {**base, "secret": A.secret,
             "sftp": {"username": A.username, "password": A.password,
                      "authorized_keys": [A.key.export_public_key().decode().strip()]}}
    second = {"app_id": B.app_id, "secret": B.secret, "name": "另一出行平台", "merchant": "OTHER02",
              "supervision_account": "98010078801000002", "settlement_account": "31010078801000002",
              "sftp": {"username": B.username,
                       "authorized_keys": [B.key.export_public_key().decode().strip()]}}
    return {"bank": {"open_active": True}, "platforms": [first, second],
            "sftp": {"max_upload_bytes": UPLOAD_LIMIT}}


@dataclass
class Served:
    server: BankServer
    sftp_port: int
    state_dir: Path

    def jail(self, tenant: Tenant) -> Path:
        return self.state_dir / "sftp" / tenant.app_id

    def events(self, kind: str) -> list[dict[str, Any]]:
        response = self.server.admin.get("/events", params={"kind": kind, "limit": 10_000})
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()
        return found


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("access-control")
    profile = workdir / "profile.yaml"
    profile.write_text(json.dumps(_profile()), "utf-8")  # JSON is YAML
    state = workdir / "state"
    server = start_server(workdir, profile=profile, state_dir=state, admin_token=TOKEN)
    try:
        [port_file] = [p for p in workdir.glob("port-*.json")]
        yield Served(server, int(json.loads(port_file.read_text())["sftp"]), state)
    finally:
        server.stop()


def _connect(served: Served, username: str, *, password: str | None = None,
             key: asyncssh.SSHKey | None = None, **kwargs: Any) -> Any:
    return asyncssh.connect("127.0.0.1", served.sftp_port, username=username, password=password,
                            client_keys=[key] if key else None, known_hosts=None, agent_path=None,
                            config=None, gss_host=None, **kwargs)


def run(coro: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(TIMEOUT_S):
            await coro()

    asyncio.run(bounded())


# -- SFTP logins ---------------------------------------------------------------------------------

BAD_LOGINS: dict[str, tuple[str, dict[str, Any], str]] = {
    "wrong password": (A.username, {"password": "alpha-password-2"}, "wrong password"),
    "unknown user": ("charlie", {"password": A.password}, "unknown user"),
    "unknown user with a key": ("charlie", {"key": KEY_A}, "unknown user"),
    "empty password": (A.username, {"password": ""}, "wrong password"),
    "stranger's key": (A.username, {"key": STRANGER_KEY}, "public key not authorized"),
    "other platform's key": (A.username, {"key": KEY_B}, "public key not authorized"),
    "other platform's password": (B.username, {"password": A.password}, "wrong password"),
    "other platform's user name, own key": (B.username, {"key": KEY_A}, "public key not authorized"),
}


@pytest.mark.parametrize("case", list(BAD_LOGINS))
def test_sftp_refuses_bad_credentials(served: Served, case: str) -> None:
    username, credentials, reason = BAD_LOGINS[case]
    before = len(served.events("sftp.login_refused"))

    async def attempt() -> None:
        with pytest.raises(asyncssh.PermissionDenied):
            async with _connect(served, username, **credentials):
                pass

    run(attempt)
    refused = served.events("sftp.login_refused")[before:]
    assert reason in [e["detail"]["reason"] for e in refused], refused


def test_sftp_refuses_keyboard_interactive(served: Served) -> None:
    async def attempt() -> None:
        with pytest.raises(asyncssh.PermissionDenied):
            async with _connect(served, A.username, password=A.password,
                                preferred_auth="keyboard-interactive"):
                pass

    logins = len(served.events("sftp.login"))
    run(attempt)
    assert len(served.events("sftp.login")) == logins


def test_sftp_accepts_each_platform_with_its_own_credentials(served: Served) -> None:
    async def logins() -> None:
        for tenant, creds in ((A, {"password": A.password}), (A, {"key": A.key}), (B, {"key": B.key})):
            async with _connect(served, tenant.username, **creds) as conn, conn.start_sftp_client() as sftp:
                assert sorted(await sftp.listdir("/")) == [".", "..", "download", "upload"]

    run(logins)
    methods = [(e["app_id"], e["detail"]["method"]) for e in served.events("sftp.login")][-3:]
    assert methods == [(A.app_id, "password"), (A.app_id, "publickey"), (B.app_id, "publickey")]


# -- the jail ------------------------------------------------------------------------------------


async def _put(sftp: asyncssh.SFTPClient, path: str, data: bytes) -> None:
    async with sftp.open(path, "wb") as f:
        await f.write(data)


DENIED = (asyncssh.SFTPPermissionDenied, asyncssh.SFTPNoSuchFile)


def test_one_platform_cannot_reach_the_other(served: Served) -> None:
    name = "private-image.jpg.part"
    (served.jail(A) / "download" / "returns" / "A_ONLY_RET.txt").write_bytes(b"alpha's return file")
    other = f"/../{A.app_id}"

    async def scenario() -> None:
        async with _connect(served, A.username, password=A.password) as conn, \
                conn.start_sftp_client() as sftp:
            await _put(sftp, f"/upload/images/{name}", b"alpha's")
        async with _connect(served, B.username, key=B.key) as conn, conn.start_sftp_client() as sftp:
            assert name not in await sftp.listdir("/upload/images")
            assert "A_ONLY_RET.txt" not in await sftp.listdir("/download/returns")
            attempts: list[Callable[[], Awaitable[object]]] = [
                lambda: sftp.listdir(f"{other}/upload/images"),
                lambda: sftp.listdir(f"/{A.app_id}/upload/images"),
                lambda: sftp.stat(f"{other}/download/returns/A_ONLY_RET.txt"),
                lambda: sftp.open(f"{other}/download/returns/A_ONLY_RET.txt"),
                lambda: sftp.open(f"/{A.app_id}/download/returns/A_ONLY_RET.txt"),
                lambda: sftp.open(f"../../{A.app_id}/upload/images/{name}"),
                lambda: _put(sftp, f"{other}/upload/batches/x.txt.part", b"bravo's"),
                lambda: _put(sftp, f"/upload/batches/../../../{A.app_id}/upload/batches/y.txt", b"b"),
                lambda: sftp.rename("/upload/images/mine.jpg.part",
                                    f"{other}/upload/images/mine.jpg"),
                lambda: sftp.remove(f"{other}/upload/images/{name}"),
                lambda: sftp.symlink(f"{other}/download/returns", "/upload/images/l.tmp"),
            ]
            await _put(sftp, "/upload/images/mine.jpg.part", b"bravo's")
            for index, call in enumerate(attempts):
                with pytest.raises(DENIED):
                    await call()
                assert index >= 0
            assert "upload" in await sftp.listdir("/")  # the session goes on

    run(scenario)
    assert (served.jail(A) / "upload" / "images" / name).read_bytes() == b"alpha's"
    assert sorted(p.name for p in (served.jail(A) / "upload" / "batches").iterdir()) == []
    assert (served.jail(B) / "upload" / "images" / "mine.jpg.part").exists()


ESCAPES = ["..", "/..", "../..", "/../../etc/passwd", "/upload/../../x", "upload/batches/../../../x",
           "//..//..//x", "/upload/batches/../../../../../../../../tmp"]


@pytest.mark.parametrize("path", ESCAPES)
def test_escapes_fail_with_an_sftp_status(served: Served, path: str) -> None:
    refused = len(served.events("sftp.refused"))
    host_root = served.state_dir.parent
    before = sorted(p.name for p in host_root.iterdir())

    async def scenario() -> None:
        async with _connect(served, A.username, password=A.password) as conn, \
                conn.start_sftp_client() as sftp:
            for call in (lambda: sftp.stat(path), lambda: sftp.listdir(path),
                         lambda: sftp.open(path), lambda: _put(sftp, path, b"x"),
                         lambda: _put(sftp, path + "/escape.txt.part", b"x"),
                         lambda: sftp.mkdir(path + "/d"),
                         lambda: sftp.symlink(path, "/upload/images/link.tmp"),
                         lambda: sftp.symlink("/upload/images", path + "/link.tmp"),
                         lambda: sftp.link("/upload/images/none.part", path + "/hard.tmp"),
                         lambda: sftp.rename("/upload/images/none.part", path + "/moved.txt")):
                with pytest.raises(DENIED):
                    await call()
            assert "upload" in await sftp.listdir("/")

    run(scenario)
    assert sorted(p.name for p in host_root.iterdir()) == before
    assert not list(served.jail(A).rglob("*escape*")) and not list(served.jail(A).rglob("*link.tmp"))
    assert len(served.events("sftp.refused")) > refused


TRAVERSAL_NAMES = ["..%2F..%2Fetc%2Fpasswd", "..\\..\\windows\\win.ini", "....", "..txt.part", "~root",
                   "%2e%2e%2f.part"]


def test_traversal_looking_names_stay_in_the_jail(served: Served) -> None:
    async def scenario() -> None:
        async with _connect(served, A.username, password=A.password) as conn, \
                conn.start_sftp_client() as sftp:
            for name in TRAVERSAL_NAMES:
                await _put(sftp, f"/upload/images/{name}", b"named oddly")
            listed = await sftp.listdir("/upload/images")
            assert set(TRAVERSAL_NAMES) <= set(listed)

    run(scenario)
    images = served.jail(A) / "upload" / "images"
    for name in TRAVERSAL_NAMES:
        path = images / name
        assert path.is_file() and path.resolve().parent == images.resolve(), name


def test_an_oversized_upload_stops_at_the_limit(served: Served) -> None:
    rejections = served.server.admin.get("/rejections").json()

    async def scenario() -> None:
        async with _connect(served, A.username, password=A.password) as conn, \
                conn.start_sftp_client() as sftp:
            with pytest.raises(asyncssh.SFTPFailure, match="upload limit"):
                await _put(sftp, "/upload/batches/DF_DEMO01_20260105_77.txt", b"x" * (UPLOAD_LIMIT * 3))
            assert "DF_DEMO01_20260105_77.txt" not in await sftp.listdir("/upload/batches")
            await _put(sftp, "/upload/batches/exactly.txt.part", b"y" * UPLOAD_LIMIT)
            assert (await sftp.stat("/upload/batches/exactly.txt.part")).size == UPLOAD_LIMIT

    run(scenario)
    assert not (served.jail(A) / "upload" / "batches" / "DF_DEMO01_20260105_77.txt").exists()
    # The bank never saw the cut-off file: no rejection, no batch.
    assert served.server.admin.get("/rejections").json() == rejections
    assert served.server.admin.get("/batches").json() == []
    reasons = [e["detail"]["reason"] for e in served.events("sftp.refused")]
    assert any("upload limit" in r for r in reasons)


# -- bank API signatures, every operation --------------------------------------------------------


def _operations() -> list[tuple[str, str, bytes]]:
    """(method, concrete path, body) for every operation of the contract."""
    out = []
    for op in OPERATIONS:
        path = op.path.replace("{account_no}", "6231880000000000017").replace("{request_serial}", "AC-Q-1")
        body = json.dumps({"request_serial": f"AC-{op.name}"}).encode() if op.mutating else b""
        out.append((op.method, path, body))
    return out


OPS = _operations()
IDS = [f"{m} {p}" for m, p, _ in OPS]


def _code(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, str(response.json().get("code"))


@pytest.mark.parametrize(("method", "path", "body"), OPS, ids=IDS)
def test_every_operation_refuses_bad_signatures(served: Served, method: str, path: str,
                                                body: bytes) -> None:
    now = int(time.time())
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "unsigned": ({"sign": False}, "1001"),
        "unknown app id": ({"app_id": "no-such-platform"}, "1002"),
        "wrong secret": ({"secret": "not-the-secret-at-all"}, "1003"),
        "other platform's secret": ({"secret": B.secret}, "1003"),
        "signed another path": ({"sign_path": path + "x"}, "1003"),
        "signed another body": ({"sign_body": body + b" "}, "1003"),
        "signed another method": ({"sign_method": "PUT"}, "1003"),
        "stale": ({"timestamp": now - 3600}, "1004"),
        "from the future": ({"timestamp": now + 3600}, "1004"),
    }
    with SignedClient(served.server.url, app_id=A.app_id, secret=A.secret) as client:
        for label, (kwargs, code) in cases.items():
            response = client.request(method, path, content=body, **kwargs)
            assert _code(response) == (401, code), (label, response.text)
    rejected = served.server.admin.get("/events", params={"kind": "request.rejected", "limit": 10_000})
    assert len([e for e in rejected.json() if e["detail"]["path"] == path]) >= len(cases)


@pytest.mark.parametrize(("method", "path", "body"), OPS, ids=IDS)
def test_every_operation_refuses_a_replayed_nonce(served: Served, method: str, path: str,
                                                  body: bytes) -> None:
    nonce = f"replay-{abs(hash((method, path))) % 10**12:012d}"
    ts = int(time.time())
    with SignedClient(served.server.url, app_id=A.app_id, secret=A.secret) as client:
        first = client.request(method, path, content=body, timestamp=ts, nonce=nonce)
        assert first.status_code != 401, first.text
        again = client.request(method, path, content=body, timestamp=ts, nonce=nonce)
        assert _code(again) == (401, "1005"), again.text
        # The same nonce from the other platform is its own nonce.
        with SignedClient(served.server.url, app_id=B.app_id, secret=B.secret) as other:
            assert other.request(method, path, content=body, nonce=nonce).status_code != 401


# -- the control API ---------------------------------------------------------------------------


_PARAMS = {"app_id": A.app_id, "account_no": "6231880000000000017", "batch_no": "1",
           "area": "batches", "name": "n.txt"}


def _admin_routes() -> list[tuple[str, str]]:
    """Every route of the control API, read from the app itself (not from its docs)."""
    from fastapi.routing import APIRoute
    from starlette.routing import Mount

    from simulator.bank import Bank
    from simulator.http.app import create_app

    bank = Bank(load_profile(None), None)
    try:
        app = create_app(bank, admin_token=TOKEN)
        [admin] = [r for r in app.routes if isinstance(r, Mount) and r.path == "/_admin"]
        routes = []
        for route in admin.routes:
            if not isinstance(route, APIRoute):
                continue
            path = re.sub(r"{(\w+)(:\w+)?}", lambda m: _PARAMS.get(m[1], "x"), route.path)
            routes += [(method, path) for method in sorted(route.methods or ())]
        return routes
    finally:
        bank.destroy()


def test_every_control_route_needs_the_token(served: Served) -> None:
    routes = _admin_routes()
    assert len(routes) >= 20 and ("POST", "/reset") in routes
    clock = served.server.admin.get("/clock").json()
    with httpx.Client(base_url=served.server.url + "/_admin", timeout=10.0) as anonymous:
        for headers in ({}, {"X-Admin-Token": "wrong"}, {"X-Admin-Token": TOKEN.upper()},
                        {"X-Admin-Token": TOKEN[:-1]}, {"Authorization": f"Bearer {TOKEN}"}):
            for method, path in routes:
                response = anonymous.request(method, path, headers=headers, json={"by": "1d"})
                assert _code(response) == (401, "1030"), (method, path, headers, response.text)
    # Nothing moved: no reset, no clock advance, no profile change.
    assert served.server.admin.get("/clock").json() == clock


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "bank.example.com"])
def test_off_loopback_without_a_token_refuses_to_start(host: str, tmp_path: Path) -> None:
    result = _serve("--host", host, tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "--admin-token" in result.stderr and host in result.stderr


def test_off_loopback_with_an_empty_token_refuses_to_start(tmp_path: Path) -> None:
    result = _serve("--host", "0.0.0.0", "--admin-token", "", tmp_path=tmp_path)
    assert result.returncode == 2 and "--admin-token" in result.stderr, result.stderr
    result = _serve("--host", "0.0.0.0", tmp_path=tmp_path, env={"BANKSIM_ADMIN_TOKEN": ""})
    assert result.returncode == 2 and "--admin-token" in result.stderr, result.stderr


def _serve(*args: str, tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BANKSIM_")}
    full_env.update(env or {})
    full_env["TMPDIR"] = str(tmp_path)
    # Port 0 everywhere: were the check ever skipped, nothing fixed would be taken.
    return subprocess.run([sys.executable, "-m", "simulator.cli", "serve", "--ephemeral",
                           "--http-port", "0", "--sftp-port", "0", *args],
                          cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=30,
                          check=False)


# -- one platform's file cannot stop the bank for the others --------------------------------------


def test_one_platforms_malformed_file_does_not_stop_the_bank_for_anyone(tmp_path: Path) -> None:
    """A header one field short, uploaded over SFTP by platform A; then platform B is served.

    The refusal reason of such a file names the separator, which the rejection file cannot
    hold: the bank must still answer A's file with a rejection and B's requests as usual,
    and start again on the same state.
    """
    profile = tmp_path / "profile.yaml"
    profile.write_text(json.dumps(_profile()), "utf-8")
    state = tmp_path / "state"
    server = start_server(tmp_path / "first", profile=profile, state_dir=state, admin_token=TOKEN)
    try:
        [port_file] = list((tmp_path / "first").glob("port-*.json"))
        here = Served(server, int(json.loads(port_file.read_text())["sftp"]), state)
        name = "DF_DEMO01_20260105_5.txt"

        async def upload() -> None:
            async with _connect(here, A.username, password=A.password) as conn, \
                    conn.start_sftp_client() as sftp:
                await _put(sftp, f"/upload/batches/{name}.part",
                           b"H|5|20260105|DEMO01|DF|0|98010078801000001|\r\n")
                await sftp.rename(f"/upload/batches/{name}.part", f"/upload/batches/{name}")

        run(upload)
        with SignedClient(server.url, app_id=B.app_id, secret=B.secret) as other:
            answer = other.open_account("AC-AFTER-1", {
                "name": "李四", "id_number": "110101199003074477", "mobile": "13800138001",
                "bound_card_number": "6222020000000000422", "bound_card_kind": "DEBIT_I"})
            assert answer.status_code < 500, answer.text
        rejections = server.admin.get("/rejections")
        assert rejections.status_code == 200, rejections.text
        assert [r["code"] for r in rejections.json()] == ["4002"]
    finally:
        server.stop()
    again = start_server(tmp_path / "second", profile=profile, state_dir=state, admin_token=TOKEN)
    again.stop()
