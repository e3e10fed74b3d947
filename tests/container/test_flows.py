"""The bank's flows against the container: a signed account opening, and a disbursement batch
over SFTP whose return file appears once the virtual clock is advanced (never waited out).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from datetime import date
from typing import Any, TypeVar

import asyncssh
import httpx

from contracts.codec import decode_file, encode_file, load_layout, return_file_name
from contracts.money import parse_yuan
from contracts.signing import sign_headers
from simulator.testing.container import BankSimulatorContainer
from simulator.testing.handle import SimulatorHandle
from tests.integration.conftest import make_identity

T = TypeVar("T")
SFTP_TIMEOUT_S = 30.0
DAY = date(2026, 1, 5)  # the profile's clock start


def signed(handle: SimulatorHandle, method: str, path: str, body: Any = None) -> httpx.Response:
    """One bank API call signed over the exact bytes sent (contracts/signing.py)."""
    content = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
    headers = sign_headers(handle.app_id, handle.secret, method, path, content)
    if content:
        headers["Content-Type"] = "application/json"
    return httpx.request(method, handle.http_url + path, content=content, headers=headers, timeout=10)


def test_signed_account_opening(bank_container: BankSimulatorContainer, admin: httpx.Client) -> None:
    handle = bank_container.handle()
    request = {"request_serial": "CT-OPEN-1", **make_identity(1)}
    opened = signed(handle, "POST", "/api/v1/accounts/open", request)
    assert opened.status_code == 200, opened.text
    answer = opened.json()
    assert (answer["code"], answer["request_serial"]) == ("0000", "CT-OPEN-1")
    account_no = answer["data"]["account_no"]
    assert len(account_no) == 19 and account_no.startswith("623188")
    assert answer["data"]["status"] == "ACTIVE"  # the session profile opens accounts ACTIVE

    replay = signed(handle, "POST", "/api/v1/accounts/open", request)
    assert replay.headers.get("X-Idempotent-Replay") == "true"
    assert replay.json() == answer
    view = signed(handle, "GET", f"/api/v1/accounts/{account_no}")
    assert view.status_code == 200, view.text
    assert view.json()["data"]["balance"] == "0.00"

    unsigned = httpx.post(handle.http_url + "/api/v1/accounts/open", json=request, timeout=10)
    assert (unsigned.status_code, unsigned.json()["code"]) == (401, "1001"), unsigned.text
    wrong_secret = signed(SimulatorHandle(http_url=handle.http_url, secret="not-the-secret"),
                          "POST", "/api/v1/accounts/open", request)
    assert (wrong_secret.status_code, wrong_secret.json()["code"]) == (401, "1003"), wrong_secret.text


# -- SFTP -------------------------------------------------------------------------------------


async def _bounded(aw: Awaitable[T]) -> T:
    return await asyncio.wait_for(aw, SFTP_TIMEOUT_S)


async def _session(handle: SimulatorHandle) -> asyncssh.SSHClientConnection:
    assert handle.sftp_host is not None and handle.sftp_port is not None
    return await _bounded(asyncssh.connect(
        handle.sftp_host, handle.sftp_port, username=handle.sftp_username,
        password=handle.sftp_password, known_hosts=None, client_keys=None, agent_path=None,
        config=None, gss_host=None))


async def _upload(handle: SimulatorHandle, directory: str, name: str, data: bytes) -> None:
    """Upload under a temporary name, then rename: the bank never sees half a file."""
    async with await _session(handle) as conn, conn.start_sftp_client() as sftp:
        async with sftp.open(f"{directory}/{name}.part", "wb") as fh:
            await _bounded(fh.write(data))
        await _bounded(sftp.rename(f"{directory}/{name}.part", f"{directory}/{name}"))


async def _download(handle: SimulatorHandle, path: str) -> tuple[list[str], bytes]:
    """The names in the file's directory, and the file (empty when it is not there)."""
    directory, name = path.rsplit("/", 1)
    data = b""
    async with await _session(handle) as conn, conn.start_sftp_client() as sftp:
        names = sorted(await _bounded(sftp.listdir(directory)))
        if name in names:
            async with sftp.open(path, "rb") as fh:
                data = await _bounded(fh.read())
    return names, data


def test_batch_over_sftp_and_a_clock_advance_give_the_return_file(
        bank_container: BankSimulatorContainer, admin: httpx.Client) -> None:
    handle = bank_container.handle()
    platform = admin.get("/profile").json()["platforms"][0]
    people = []
    for n in (11, 12):
        identity = make_identity(n)
        opened = signed(handle, "POST", "/api/v1/accounts/open",
                        {"request_serial": f"CT-BATCH-OPEN-{n}", **identity})
        assert opened.status_code == 200, opened.text
        people.append((opened.json()["data"]["account_no"], identity["name"]))
    funded = admin.post(f"/accounts/{platform['supervision_account']}/deposit", json={"amount": "500.00"})
    assert funded.status_code == 200, funded.text

    amounts = [parse_yuan("100.00"), parse_yuan("50.25")]
    header = {"batch_no": "1", "business_date": DAY, "merchant": platform["merchant"], "kind": "DF",
              "record_count": 2, "total_amount": sum(amounts),
              "account_no": platform["supervision_account"]}
    details = [{"seq": i, "serial": f"CT-TOP-{i}", "account_no": account_no, "account_name": name,
                "amount": fen, "memo": "充值到账"}
               for i, ((account_no, name), fen) in enumerate(zip(people, amounts, strict=True), 1)]
    name = f"DF_{platform['merchant']}_{DAY:%Y%m%d}_1.txt"
    asyncio.run(_upload(handle, "/upload/batches", name, encode_file(
        load_layout("disbursement_request"), header, details)))

    returned = f"/download/returns/{return_file_name(name)}"
    listed, data = asyncio.run(_download(handle, returned))
    assert data == b"", f"a return file before the clock moved: {listed}"
    advanced = admin.post("/clock/advance", json={"by": "25m"})  # processing 10 min, return 15 min later
    assert advanced.status_code == 200, advanced.text

    listed, data = asyncio.run(_download(handle, returned))
    assert data, f"no {returned} after the clock advance; download/returns has {listed}"
    ret = decode_file(load_layout("return"), data)
    assert [(d["serial"], d["result"], d["code"], d["amount"]) for d in ret.details] == [
        ("CT-TOP-1", "S", "0000", amounts[0]), ("CT-TOP-2", "S", "0000", amounts[1])]
    assert (ret.header["success_count"], ret.header["success_amount"]) == (2, sum(amounts))
    balances = [signed(handle, "GET", f"/api/v1/accounts/{account_no}").json()["data"]["balance"]
                for account_no, _ in people]
    assert balances == ["100.00", "50.25"]
    supervision = admin.get(f"/accounts/{platform['supervision_account']}").json()
    assert supervision["balance"] == "349.75"
