"""A large batch must not stall the other platforms.

Written from the public contract only: a real ``banksim serve`` (loopback, free ports),
two platforms, the control API and signed bank API. Platform A uploads a disbursement
file of 150,000 records and the clock is advanced past its processing time (the advance
answers only when the batch is processed). While that advance runs, platform B keeps
querying its own account with signed requests and the bank's ``/health`` is asked too.

What is checked is the order of events, never how long anything took: B's answers and
``/health`` come while A's batch is ``PROCESSING`` (some records decided, not all), at
several different points of its progress (so it is processed in more than one slice with
requests answered in between), and in the end every record is returned once and the
books balance. A bank whose event loop is held by the batch answers B only after it.
"""

from __future__ import annotations

import json
import threading
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.codec import FileReader, FileWriter, load_layout
from simulator.config import load_profile
from tests.integration.conftest import BankServer, SignedClient, make_identity, start_server

RECORDS = 150_000
A_APP, A_SECRET = "demo-platform", "fair-secret-a-123456"
B_APP, B_SECRET = "other-platform", "fair-secret-b-654321"


def _profile() -> dict[str, Any]:
    base = load_profile(None).as_dict()["platforms"][0]
    first = {**base, "secret": A_SECRET, "supervision_opening_balance": "10000000.00"}
    second = {"app_id": B_APP, "secret": B_SECRET, "name": "另一出行平台", "merchant": "OTHER02",
              "supervision_account": "98010078801000002", "settlement_account": "31010078801000002"}
    return {"bank": {"open_active": True}, "platforms": [first, second],
            "batches": {"rules": []}, "clock": {"mode": "manual"}}


def _open(client: SignedClient, serial: str, n: int) -> tuple[str, str]:
    identity = make_identity(n)
    answer = client.open_account(serial, identity)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["code"] == "0000", body
    return str(body["data"]["account_no"]), identity["name"]


def _batch_file(path: Path, day: date, accounts: list[tuple[str, str]]) -> None:
    with open(path, "wb") as fh:
        writer = FileWriter(load_layout("disbursement_request"), fh)
        writer.write_header({"batch_no": "1", "business_date": day, "merchant": "DEMO01", "kind": "DF",
                             "record_count": RECORDS, "total_amount": RECORDS * 100,
                             "account_no": "98010078801000001"})
        for i in range(RECORDS):
            no, name = accounts[i % len(accounts)]
            writer.write_detail({"seq": i + 1, "serial": f"FAIR{i + 1:09d}", "account_no": no,
                                 "account_name": name, "amount": 100, "memo": "代发"})


@pytest.fixture
def server(tmp_path: Path) -> Any:
    profile = tmp_path / "profile.yaml"
    profile.write_text(json.dumps(_profile()), "utf-8")  # JSON is YAML
    started = start_server(tmp_path / "server", profile=profile, state_dir=tmp_path / "state")
    try:
        yield started
    finally:
        started.stop()


def _batch(server: BankServer) -> dict[str, Any]:
    answer = server.admin.get("/batches", params={"app_id": A_APP})
    assert answer.status_code == 200, answer.text
    [batch] = answer.json()
    return dict(batch)


def test_other_platforms_are_answered_between_the_slices_of_a_large_batch(
        server: BankServer, tmp_path: Path) -> None:
    with SignedClient(server.url, app_id=A_APP, secret=A_SECRET) as a:
        accounts = [_open(a, f"FAIR-A-{n}", n) for n in range(40)]
    with SignedClient(server.url, app_id=B_APP, secret=B_SECRET) as b:
        b_account, _ = _open(b, "FAIR-B-1", 1000)
    day = date.fromisoformat(server.admin.get("/clock").json()["business_date"])
    name = f"DF_DEMO01_{day:%Y%m%d}_1.txt"
    _batch_file(tmp_path / name, day, accounts)
    upload = server.admin.post(f"/files/{A_APP}/batches/{name}", content=(tmp_path / name).read_bytes(),
                               headers={"content-type": "application/octet-stream"},
                               timeout=300)
    assert upload.status_code == 200 and upload.json()["accepted"] is True, upload.text

    advanced: dict[str, Any] = {}

    def advance() -> None:
        with httpx.Client(base_url=server.url + "/_admin", timeout=600) as admin:
            advanced["answer"] = admin.post("/clock/advance", json={"by": "11m"})

    runner = threading.Thread(target=advance)
    runner.start()
    seen: list[tuple[str, int]] = []  # (batch state, records decided) right after an answer to B
    health_during = 0
    try:
        with SignedClient(server.url, app_id=B_APP, secret=B_SECRET, timeout=600) as b:
            # Bounded: at most 20,000 rounds, and only while the advance has not answered.
            for _ in range(20_000):
                if not runner.is_alive():
                    break
                answer = b.query_account(b_account)
                assert answer.status_code == 200 and answer.json()["code"] == "0000", answer.text
                batch = _batch(server)
                seen.append((batch["state"], int(batch.get("processed_records") or 0)))
                if batch["state"] == "PROCESSING":
                    health = httpx.get(server.url + "/health", timeout=600)
                    assert health.status_code == 200, health.text
                    health_during += 1
    finally:
        runner.join(timeout=600)
    assert advanced["answer"].status_code == 200, advanced["answer"].text

    during = [done for state, done in seen if state == "PROCESSING"]
    assert during, f"platform B was never answered while A's batch was being processed: {seen[-5:]}"
    assert all(0 < done < RECORDS for done in during), during
    # Answers at several points of the batch's progress: it went in several slices,
    # with requests answered in between, in file order (progress never goes back).
    assert len(set(during)) >= 2, during
    assert during == sorted(during), during
    assert health_during >= 1

    batch = _batch(server)
    assert batch["state"] == "PROCESSED" and batch["processed_records"] == RECORDS, batch
    # The return file (written return_delay later) has every record once, in file order.
    returned = server.admin.post("/clock/advance", json={"by": "15m"}, timeout=600)
    assert returned.status_code == 200, returned.text
    assert _batch(server)["state"] == "RETURNED"
    assert server.state_dir is not None
    path = server.state_dir / "sftp" / A_APP / "download" / "returns" / name.replace(".txt", "_RET.txt")
    with open(path, "rb") as fh:
        details = [d for _, d in FileReader(load_layout("return"), fh)]
    assert [d["seq"] for d in details] == list(range(1, RECORDS + 1))
    assert sum(d["result"] == "S" for d in details) == batch["success_count"] > 0
    invariants = server.invariants()
    assert invariants["ok"], invariants
