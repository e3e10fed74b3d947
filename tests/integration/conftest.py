"""Integration fixtures: real `banksim serve` subprocesses on free loopback ports.

* :func:`start_server` starts ``python -m simulator.cli serve --http-port 0 --port-file F``
  (``--ephemeral`` unless a state dir is given) and waits for the port file;
  :meth:`BankServer.stop` sends SIGTERM, then kills.
* :class:`SignedClient` signs every request with :func:`contracts.signing.sign_headers`
  over the exact bytes it sends, and can be told to use a given timestamp/nonce, to sign
  something other than what it sends, or not to sign at all.
* ``bank_server`` is one server per test module; the function-scoped ``server`` fixture
  puts the module's starting profile back and resets the bank before each test.
* After every test that used a server, ``GET /_admin/invariants`` must say ``ok`` (house
  rule); a violation fails the test itself (see :func:`pytest_runtest_call`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from contracts.signing import sign_headers
from simulator.domain.identity import make_card_number, make_id_number

ROOT = Path(__file__).resolve().parents[2]
APP_ID = "demo-platform"
SECRET = "banksim-dev-secret"
READY_POLL_S = 0.01
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


# -- the server process -------------------------------------------------------------------


def _subprocess_env(tmp_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANKSIM_")}
    # --ephemeral uses tempfile.mkdtemp(): keep whatever it leaves inside pytest's tmp dirs.
    env["TMPDIR"] = str(tmp_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class BankServer:
    """One running `banksim serve` process."""

    process: subprocess.Popen[bytes]
    url: str
    port: int
    workdir: Path
    log_path: Path
    admin_token: str | None = None
    state_dir: Path | None = None
    _admin: httpx.Client | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace") if self.log_path.exists() else ""

    def banner_state_dir(self) -> Path | None:
        """The state directory the banner printed (for --ephemeral, the temp dir)."""
        m = re.search(r"^\s*state\s+(\S.*)$", self.log_text(), re.MULTILINE)
        return Path(m.group(1).strip()) if m else None

    @property
    def admin(self) -> httpx.Client:
        """A client for the control API (``/_admin``), with the admin token if any."""
        if self._admin is None:
            headers = {"X-Admin-Token": self.admin_token} if self.admin_token else {}
            self._admin = httpx.Client(base_url=self.url + "/_admin", headers=headers, timeout=10.0)
        return self._admin

    def signed(self, app_id: str = APP_ID, secret: str = SECRET, timeout: float = 10.0) -> SignedClient:
        return SignedClient(self.url, app_id=app_id, secret=secret, timeout=timeout)

    def invariants(self) -> dict[str, Any]:
        response = self.admin.get("/invariants")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def stop(self) -> int | None:
        """SIGTERM, wait, then SIGKILL; returns the exit status."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        return self.process.returncode


def _read_port_file(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    try:
        data: dict[str, Any] = json.loads(text)
    except ValueError:  # written but not complete yet
        return None
    return data


def start_server(workdir: Path, *, profile: Path | None = None, state_dir: Path | None = None,
                 admin_token: str | None = None, extra_args: Sequence[str] = ()) -> BankServer:
    """Start `banksim serve` on a free loopback port and wait until it is ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    port_file = workdir / f"port-{tag}.json"
    log_path = workdir / f"server-{tag}.log"
    args = [sys.executable, "-m", "simulator.cli", "serve", "--host", "127.0.0.1",
            "--http-port", "0", "--sftp-port", "0", "--port-file", str(port_file)]
    args += ["--state-dir", str(state_dir)] if state_dir is not None else ["--ephemeral"]
    if profile is not None:
        args += ["--profile", str(profile)]
    if admin_token is not None:
        args += ["--admin-token", admin_token]
    args += list(extra_args)
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=_subprocess_env(workdir))
    deadline = time.monotonic() + READY_TIMEOUT_S
    while (ready := _read_port_file(port_file)) is None:
        if process.poll() is not None:
            raise RuntimeError(f"banksim serve exited with {process.returncode}:\n"
                               f"{log_path.read_text('utf-8', errors='replace')}")
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(f"banksim serve not ready after {READY_TIMEOUT_S} s:\n"
                               f"{log_path.read_text('utf-8', errors='replace')}")
        time.sleep(READY_POLL_S)
    return BankServer(process=process, url=str(ready["url"]), port=int(ready["http"]),
                      workdir=workdir, log_path=log_path, admin_token=admin_token,
                      state_dir=state_dir)


# -- the signed client --------------------------------------------------------------------


class SignedClient:
    """``httpx.Client`` for the bank API that signs the exact bytes it sends."""

    def __init__(self, base_url: str, *, app_id: str = APP_ID, secret: str = SECRET,
                 timeout: float = 10.0) -> None:
        self.app_id = app_id
        self.secret = secret
        self.http = httpx.Client(base_url=base_url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SignedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def encode(body: Any) -> bytes:
        return json.dumps(body, ensure_ascii=False).encode()

    def request(self, method: str, path: str, body: Any = None, *, content: bytes | None = None,
                sign: bool = True, timestamp: int | None = None, nonce: str | None = None,
                app_id: str | None = None, secret: str | None = None,
                sign_path: str | None = None, sign_body: bytes | None = None,
                sign_method: str | None = None, timeout: float | None = None,
                headers: dict[str, str] | None = None) -> httpx.Response:
        """Send ``body`` (JSON) or raw ``content``; ``sign_*`` sign something else than sent."""
        data = content if content is not None else (b"" if body is None else self.encode(body))
        sent_headers: dict[str, str] = {}
        if data:
            sent_headers["Content-Type"] = "application/json"
        if sign:
            sent_headers.update(sign_headers(
                app_id or self.app_id, secret or self.secret, sign_method or method,
                sign_path if sign_path is not None else path,
                sign_body if sign_body is not None else data,
                timestamp=timestamp, nonce=nonce))
        sent_headers.update(headers or {})
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        return self.http.request(method, path, content=data, headers=sent_headers, **extra)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, body, **kwargs)

    # -- the bank API's operations ----------------------------------------------------

    def open_account(self, serial: str, identity: dict[str, str], **kwargs: Any) -> httpx.Response:
        return self.post("/api/v1/accounts/open", {"request_serial": serial, **identity}, **kwargs)

    def query_opening(self, serial: str, **kwargs: Any) -> httpx.Response:
        return self.get(f"/api/v1/accounts/openings/{serial}", **kwargs)

    def query_account(self, account_no: str, **kwargs: Any) -> httpx.Response:
        return self.get(f"/api/v1/accounts/{account_no}", **kwargs)

    def freeze(self, account_no: str, serial: str, reason: str = "", **kwargs: Any) -> httpx.Response:
        return self.post(f"/api/v1/accounts/{account_no}/freeze",
                         {"request_serial": serial, "reason": reason}, **kwargs)

    def unfreeze(self, account_no: str, serial: str, **kwargs: Any) -> httpx.Response:
        return self.post(f"/api/v1/accounts/{account_no}/unfreeze", {"request_serial": serial},
                         **kwargs)

    def close_account(self, account_no: str, serial: str, **kwargs: Any) -> httpx.Response:
        return self.post(f"/api/v1/accounts/{account_no}/close", {"request_serial": serial},
                         **kwargs)

    def refund(self, serial: str, account_no: str, amount: str, memo: str = "",
               **kwargs: Any) -> httpx.Response:
        body = {"request_serial": serial, "account_no": account_no, "amount": amount}
        if memo:
            body["memo"] = memo
        return self.post("/api/v1/refunds", body, **kwargs)

    def query_refund(self, serial: str, **kwargs: Any) -> httpx.Response:
        return self.get(f"/api/v1/refunds/{serial}", **kwargs)


# -- identities ---------------------------------------------------------------------------

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平"


def make_identity(n: int, *, area_code: str = "310101", birth: date | None = None,
                  card_prefix: str = "622202", kind: str = "DEBIT_I") -> dict[str, str]:
    """Five valid elements for person ``n``: distinct n give distinct ID numbers."""
    if n < 0:
        raise ValueError("n must be >= 0")
    born = birth or date(1970, 1, 1) + timedelta(days=n // 1000)
    return {
        "name": _SURNAMES[n % len(_SURNAMES)] + _GIVEN[(n // len(_SURNAMES)) % len(_GIVEN)],
        "id_number": make_id_number(area_code, born, n % 1000),
        "mobile": f"138{n % 10**8:08d}",
        "bound_card_number": make_card_number(card_prefix, 19, n),
        "bound_card_kind": kind,
    }


class IdentityFactory(Protocol):
    def __call__(self, n: int, *, area_code: str = ..., birth: date | None = ...,
                 card_prefix: str = ..., kind: str = ...) -> dict[str, str]: ...


# -- invariants after every test ------------------------------------------------------------


class InvariantsGuard:
    """The servers a test used; their ledger invariants are checked after the test."""

    def __init__(self) -> None:
        self.servers: list[BankServer] = []

    def watch(self, server: BankServer) -> None:
        if server not in self.servers:
            self.servers.append(server)

    def violations(self) -> list[str]:
        found = []
        for server in self.servers:
            if not server.running:
                continue
            result = server.invariants()
            if result.get("ok") is not True:
                found.append(f"{server.url}: {result.get('violations')}")
        return found


@pytest.fixture(autouse=True)
def invariants_guard() -> InvariantsGuard:
    return InvariantsGuard()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    result = yield  # re-raises when the test itself failed
    funcargs = getattr(item, "funcargs", {})
    guard = funcargs.get("invariants_guard")
    if isinstance(guard, InvariantsGuard):
        violations = guard.violations()
        assert not violations, f"GET /_admin/invariants not ok after the test: {violations}"
    return result


# -- fixtures -------------------------------------------------------------------------------


ServerStarter = Callable[..., BankServer]


@pytest.fixture
def start_bank_server(tmp_path: Path, invariants_guard: InvariantsGuard) -> Iterator[ServerStarter]:
    """Factory: start extra servers for one test; all are stopped at teardown."""
    started: list[BankServer] = []

    def start(**kwargs: Any) -> BankServer:
        server = start_server(tmp_path / "servers", **kwargs)
        started.append(server)
        invariants_guard.watch(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture(scope="module")
def bank_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BankServer]:
    """One server per test module (default profile); use ``server`` for a clean bank."""
    server = start_server(tmp_path_factory.mktemp("bank-server"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def baseline_profile(bank_server: BankServer) -> dict[str, Any]:
    response = bank_server.admin.get("/profile")
    assert response.status_code == 200, response.text
    profile: dict[str, Any] = response.json()
    return profile


@pytest.fixture
def server(bank_server: BankServer, baseline_profile: dict[str, Any],
           invariants_guard: InvariantsGuard) -> BankServer:
    """The module's server with its starting profile back and a fresh state."""
    assert bank_server.running, f"the module's server died:\n{bank_server.log_text()}"
    restored = bank_server.admin.put("/profile", json=baseline_profile)
    assert restored.status_code == 200, restored.text
    reset = bank_server.admin.post("/reset")
    assert reset.status_code == 200 and reset.json()["ok"] is True, reset.text
    invariants_guard.watch(bank_server)
    return bank_server


@pytest.fixture
def client(server: BankServer) -> Iterator[SignedClient]:
    with server.signed() as signed:
        yield signed


@pytest.fixture(name="make_identity")
def make_identity_fixture() -> IdentityFactory:
    return make_identity
