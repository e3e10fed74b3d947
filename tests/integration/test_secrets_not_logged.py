"""No secret reaches the server's output, its timeline or its state, other than the profile.

`banksim serve` has no log-level option, so the server runs under a small launcher that
turns every logger to DEBUG (asyncssh at its message-level debug) before calling the same
``simulator.cli.main``. The test profile's secrets are its own: two platforms' API
secrets, an SFTP password, and the admin token. The test then drives what touches them:
password and key logins (right and wrong), signed requests (good, mis-signed with a
near-miss secret, replayed), a refund, a batch file over SFTP, control calls with and
without the token. Afterwards no secret may appear in:

* stdout/stderr after the start-up banner, and in the banner (a separate test: the banner
  of a custom profile must not print its secrets either);
* the event timeline (``GET /_admin/events``, every event);
* any file under the state directory: text files as they are, ``bank.db`` row by row
  (every table; only the stored profile itself may hold them), the SFTP trees.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import asyncssh
import httpx
import pytest

from contracts.codec import encode_file, load_layout
from simulator.config import load_profile
from tests.integration.conftest import SignedClient, make_identity

pytestmark = pytest.mark.network

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_SECRET = "pl4tform-S3cret-alpha-9c1e"
OTHER_SECRET = "pl4tform-S3cret-bravo-77d0"
SFTP_PASSWORD = "sftp-Passw0rd-alpha-51b2"
WRONG_PASSWORD = "sftp-Passw0rd-alpha-51b3"  # a typo of the real one: still a secret
ADMIN_TOKEN = "adm1n-T0ken-alpha-e4a8"
SECRETS = (PLATFORM_SECRET, OTHER_SECRET, SFTP_PASSWORD, WRONG_PASSWORD, ADMIN_TOKEN)
BANNER_END = "sftp user"  # the banner's last lines name the SFTP users
TIMEOUT_S = 30.0

LAUNCHER = """
import logging, sys
import asyncssh
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                    format="%(asctime)s %(name)s %(levelname)s %(message)s")
asyncssh.set_debug_level(2)
from simulator.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _profile() -> dict[str, Any]:
    base = load_profile(None).as_dict()["platforms"][0]
    first = {**base, "secret": PLATFORM_SECRET,
             "sftp": {"username": "alpha", "password": SFTP_PASSWORD, "authorized_keys": []}}
    second = {"app_id": "other-platform", "secret": OTHER_SECRET, "name": "另一出行平台",
              "supervision_account": "98010078801000002", "settlement_account": "31010078801000002"}
    first["supervision_opening_balance"] = "1000.00"
    return {"bank": {"open_active": True}, "platforms": [first, second]}


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    url: str
    sftp_port: int
    state_dir: Path
    profile: Path
    output: Path

    def text(self) -> str:
        return self.output.read_text("utf-8", errors="replace")


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("secrets")
    profile = workdir / "profile.yaml"
    profile.write_text(json.dumps(_profile()), "utf-8")
    port_file, output, state = workdir / "ports.json", workdir / "output.log", workdir / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANKSIM_")}
    env["PYTHONUNBUFFERED"] = "1"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, "serve", "--host", "127.0.0.1", "--http-port", "0",
             "--sftp-port", "0", "--port-file", str(port_file), "--state-dir", str(state),
             "--profile", str(profile), "--admin-token", ADMIN_TOKEN],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists():
            assert process.poll() is None, output.read_text("utf-8", errors="replace")
            assert time.monotonic() < deadline, "banksim serve not ready after 20 s"
            time.sleep(0.01)
        ports = json.loads(port_file.read_text())
        run = Running(process, str(ports["url"]), int(ports["sftp"]), state, profile, output)
        _drive(run)
        yield run
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _drive(run: Running) -> None:
    """Everything that handles a secret, right and wrong."""
    admin = httpx.Client(base_url=run.url + "/_admin", headers={"X-Admin-Token": ADMIN_TOKEN}, timeout=10)
    with admin, SignedClient(run.url, secret=PLATFORM_SECRET) as client:
        opened = client.open_account("SECRETS-1", make_identity(901))
        assert opened.status_code == 200, opened.text
        account = opened.json()["data"]["account_no"]
        assert admin.post(f"/accounts/{account}/deposit", json={"amount": "50.00"}).status_code == 200
        assert client.refund("SECRETS-RF-1", account, "10.00").status_code == 200
        assert client.query_account(account).status_code == 200
        near_miss = client.open_account("SECRETS-2", make_identity(902), secret=PLATFORM_SECRET + "x")
        assert near_miss.status_code == 401
        ts = int(time.time())
        client.query_account(account, timestamp=ts, nonce="secrets-nonce-1")
        assert client.query_account(account, timestamp=ts, nonce="secrets-nonce-1").status_code == 401
        with SignedClient(run.url, app_id="other-platform", secret=OTHER_SECRET) as other:
            assert other.query_account(account).status_code == 404
        for token in (None, ADMIN_TOKEN + "x"):
            headers = {"X-Admin-Token": token} if token else {}
            assert httpx.get(run.url + "/_admin/clock", headers=headers, timeout=10).status_code == 401
        asyncio.run(_sftp(run, account))
        assert admin.post("/clock/advance", json={"by": "1h"}).status_code == 200


async def _sftp(run: Running, account: str) -> None:
    def connect(password: str) -> Any:
        return asyncssh.connect("127.0.0.1", run.sftp_port, username="alpha", password=password,
                                known_hosts=None, client_keys=None, agent_path=None, config=None,
                                gss_host=None)

    async with asyncio.timeout(TIMEOUT_S):
        with pytest.raises(asyncssh.PermissionDenied):
            async with connect(WRONG_PASSWORD):
                pass
        day = date(2026, 1, 5)
        header = {"batch_no": "1", "business_date": day, "merchant": "DEMO01", "kind": "DF",
                  "record_count": 1, "total_amount": 100, "account_no": "98010078801000001"}
        data = encode_file(load_layout("disbursement_request"), header, [
            {"seq": 1, "serial": "SECRETS-B1", "account_no": account,
             "account_name": make_identity(901)["name"], "amount": 100, "memo": ""}])
        async with connect(SFTP_PASSWORD) as conn, conn.start_sftp_client() as sftp:
            async with sftp.open("/upload/batches/DF_DEMO01_20260105_1.txt.part", "wb") as f:
                await f.write(data)
            await sftp.rename("/upload/batches/DF_DEMO01_20260105_1.txt.part",
                              "/upload/batches/DF_DEMO01_20260105_1.txt")


def test_the_run_did_what_it_should(running: Running) -> None:
    """The secrets were exercised: logins, signatures, a batch, DEBUG logging on."""
    text = running.text()
    assert " DEBUG " in text and "asyncssh" in text
    events = httpx.get(running.url + "/_admin/events", params={"limit": 10_000},
                       headers={"X-Admin-Token": ADMIN_TOKEN}, timeout=10).json()
    kinds = {e["kind"] for e in events}
    assert {"sftp.login", "sftp.login_refused", "request.rejected", "batch.accepted"} <= kinds, kinds


def test_no_secret_in_the_output_after_the_banner(running: Running) -> None:
    lines = running.text().splitlines()
    last_banner = max(i for i, line in enumerate(lines) if BANNER_END in line or "platform  app_id" in line)
    after = "\n".join(lines[last_banner + 1:])
    assert len(after) > 1000  # DEBUG logging did run
    assert _leaks(after) == [], [ln for ln in lines[last_banner + 1:] if _leaks(ln)][:5]


def test_the_banner_does_not_print_the_secrets_of_a_custom_profile(running: Running) -> None:
    banner = [line for line in running.text().splitlines() if BANNER_END in line or "app_id=" in line]
    assert banner, running.text()[:2000]
    assert [line for line in banner if _leaks(line)] == []


def test_no_secret_on_the_timeline(running: Running) -> None:
    events = httpx.get(running.url + "/_admin/events", params={"limit": 10_000},
                       headers={"X-Admin-Token": ADMIN_TOKEN}, timeout=10).json()
    assert len(events) > 10
    leaking = [e for e in events if _leaks(json.dumps(e, ensure_ascii=False))]
    assert leaking == []


def test_no_secret_in_the_state_directory_but_the_profile(running: Running) -> None:
    leaking: list[str] = []
    for path in sorted(running.state_dir.rglob("*")):
        if not path.is_file() or path.name.startswith("bank.db"):
            continue
        if _leaks(path.read_bytes().decode("utf-8", errors="replace")) or _leaks(
                path.read_bytes().decode("gbk", errors="replace")):
            leaking.append(str(path.relative_to(running.state_dir)))
    assert leaking == []
    # The database, table by table; a copy, so the running server's WAL is read as well.
    db = sqlite3.connect(f"file:{running.state_dir / 'bank.db'}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert "events" in tables and "idempotency" in tables
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):  # table names from sqlite_master
                text = " ".join(str(v) for v in row)
                if table == "kv" and row[0] == "profile":
                    assert PLATFORM_SECRET in text  # the stored profile is the one place
                    continue
                if _leaks(text):
                    leaking.append(f"{table}: {text[:200]}")
    finally:
        db.close()
    assert leaking == []
