"""Fixtures of the contract suite: one real ``banksim serve`` for the session, a signed client.

The server is the installed command line, not an in-process app: the contract is checked
against what a platform would talk to (uvicorn, the middleware, the port file handshake).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from requests.auth import AuthBase
from requests.models import PreparedRequest

from contracts.signing import sign_headers

APP_ID = "demo-platform"
APP_SECRET = "banksim-dev-secret"
REPO_ROOT = Path(__file__).resolve().parents[2]
_PORT_FILE_POLL_S = 0.01
_PORT_FILE_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class BankServer:
    url: str
    log: Path


def signable_body(r: PreparedRequest) -> bytes:
    """The exact bytes ``requests`` will send, made UTF-8 first: it would send a str as Latin-1."""
    body = r.body
    if isinstance(body, str):
        r.body = body = body.encode("utf-8")
        r.prepare_content_length(body)
    elif body is None:
        body = b""
    elif not isinstance(body, bytes):  # pragma: no cover - streamed bodies are never generated
        raise TypeError(f"cannot sign a streamed body of type {type(body).__name__}")
    return body


class BankSignature(AuthBase):
    """Signs the exact bytes ``requests`` is about to send (``contracts.signing``)."""

    def __init__(self, app_id: str = APP_ID, secret: str = APP_SECRET) -> None:
        self.app_id = app_id
        self.secret = secret

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        body = signable_body(r)
        r.headers.update(sign_headers(self.app_id, self.secret, r.method or "GET", r.path_url, body))
        return r


def _banksim_command() -> list[str]:
    script = Path(sys.executable).with_name("banksim")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "simulator.cli"]


def _read_port_file(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (FileNotFoundError, ValueError):  # not there yet, or caught mid-write
        return None
    return data if isinstance(data, dict) and "url" in data else None


@pytest.fixture(scope="session")
def bank_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BankServer]:
    workdir = tmp_path_factory.mktemp("banksim-contract")
    port_file = workdir / "ports.json"
    log = workdir / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANKSIM_")}
    env["TMPDIR"] = str(workdir)  # --ephemeral's state dir stays inside pytest's tmp dir
    command = [*_banksim_command(), "serve", "--ephemeral", "--host", "127.0.0.1",
               "--http-port", "0", "--sftp-port", "0", "--port-file", str(port_file)]
    with log.open("wb") as log_out:
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log_out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + _PORT_FILE_TIMEOUT_S
        ports = _read_port_file(port_file)
        while ports is None:
            if proc.poll() is not None:
                pytest.fail(f"`{' '.join(command)}` exited with {proc.returncode} before writing "
                            f"its port file:\n{log.read_text('utf-8', 'replace')}")
            if time.monotonic() > deadline:
                pytest.fail(f"no port file from `{' '.join(command)}` after {_PORT_FILE_TIMEOUT_S} s:\n"
                            f"{log.read_text('utf-8', 'replace')}")
            time.sleep(_PORT_FILE_POLL_S)
            ports = _read_port_file(port_file)
        yield BankServer(url=str(ports["url"]), log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung shutdown
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def signed_session() -> Iterator[requests.Session]:
    """A session whose every request carries the four signing headers."""
    with requests.Session() as session:
        session.auth = BankSignature()
        yield session


@pytest.fixture(scope="session")
def admin_session() -> Iterator[requests.Session]:
    """The control API (``/_admin``): unsigned, no token on a loopback server."""
    with requests.Session() as session:
        yield session
