"""Fault survival of the platform client, the CI-sized run of ``bench/survival_harness.py``.

A real ``banksim serve`` with moderate fault rates everywhere (busy errors, lost and held
answers on the bank API; refused SFTP logins and dropped uploads; late, doubled and oddly
named return files, records failed 3028; dropped, doubled, delayed and ignored payment
notifications) and the platform client playing two T+1 days for a few users, its steps in
child processes, a handful of them SIGKILLed at random moments and started again. The
harness checks the platform's store after every kill and restart, and at the end that the
platform and the bank agree to the fen, the bank's invariants hold and every original
record was paid exactly once at the bank. Business delays are never waited out: the
harness advances the virtual clock.

The ``test_defect_*`` tests reproduce what the harness found when the return-file faults
with no recovery were turned on (``--stuck-rate``): see RELIABILITY.md, "Platform client
under faults". They fail until the bank can send a return file again.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from bench.survival_harness import Rates, run_survival, summary
from contracts.codec import FileFormatError, FileReader, encode_file, load_layout
from simulator.config import load_profile
from tests.integration.conftest import APP_ID, IdentityFactory, ServerStarter

pytestmark = pytest.mark.network

KILLS = 5
CI_RATES = Rates(http=0.15, hold=0.03, sftp=0.15, files=0.15, records=0.05, notify=0.15)


@pytest.mark.slow
@pytest.mark.faults
def test_platform_survives_faults_and_kills_and_agrees_with_the_bank(tmp_path: Path) -> None:
    lines: list[str] = []
    h = run_survival(users=5, days=2, kills=KILLS, seed=20260105, rates=CI_RATES,
                     workdir=tmp_path, log=lines.append)
    report = "\n".join(lines + summary(h, 0))
    assert h.violations == [], report
    # A planned kill can come after its step already finished (timing follows the wall
    # clock); most must land, and every one that landed must have been recovered from.
    assert h.kills >= KILLS - 2 and h.recovered == h.kills, report
    # The run did meet the faults it is about (the profile's draws, seeded).
    injected = h.faults
    assert sum(injected["bank API"].values()) > 0, report
    assert sum(injected["SFTP"].values()) > 0, report
    assert sum(injected["notifications"].values()) > 0, report
    # Batch 2's return file is late on purpose: the platform alerted and the operator recovered it.
    assert injected["platform"]["alert return_overdue"] >= 1, report
    assert injected["platform"]["operator: return forced"] >= 1, report
    topups, consumptions = h.dk_df
    assert topups == len(h.truth.paid) > 0 and consumptions == h.truth.consumptions > 0, report


# -- defects: return files no operator action can recover ------------------------------------------


def _profile(tmp_path: Path, fault: str) -> Path:
    platform = load_profile(None).as_dict()["platforms"][0]
    platform["supervision_opening_balance"] = "1000.00"
    path = tmp_path / f"profile-{fault}.yaml"
    path.write_text(json.dumps({"bank": {"open_active": True}, "platforms": [platform], "batches": {
        "file_faults": [{"name": f"batch 1: {fault}", "match": {"batch_no": "1"},
                         "action": {fault: 1 if fault == "missing_records" else True}}]}},
        ensure_ascii=False), "utf-8")
    return path


def _complete_returns(returns: Path, stem: str) -> list[list[str]]:
    """Serials of every complete (trailer present, all lines) return file of the batch."""
    complete = []
    for path in sorted(returns.glob(f"{stem}_*")):
        if "_REJ" in path.name.upper():
            continue
        try:
            with path.open("rb") as fh:
                reader = FileReader(load_layout("return"), fh)
                serials = [d["serial"] for _, d in reader]
                trailer, header = reader.trailer, reader.header
        except FileFormatError:
            continue
        if trailer is not None and len(serials) == header["record_count"]:
            complete.append(serials)
    return complete


@pytest.mark.faults
@pytest.mark.parametrize("fault", ["never", "truncated", "missing_records"])
def test_the_operator_gets_a_complete_return_file_sent_again(
        fault: str, tmp_path: Path, start_bank_server: ServerStarter,
        make_identity: IdentityFactory) -> None:
    """A batch the bank processed (money moved) whose return file never came, came cut off
    or came without some records: the platform keeps those records waiting (and alerts);
    the operator asks the bank to send the return file again (补发回盘,
    ``POST /_admin/batches/{app_id}/{batch_no}/return``) and gets one complete copy.
    """
    state = tmp_path / "state"
    server = start_bank_server(profile=_profile(tmp_path, fault), state_dir=state)
    with server.signed() as client:
        opened = client.request("POST", "/api/v1/accounts/open",
                                {"request_serial": "OPEN-1", **make_identity(1)})
    assert opened.status_code == 200, opened.text
    account = opened.json()["data"]
    name = "DF_DEMO01_20260105_1.txt"
    records = [{"seq": i, "serial": f"DF{i}", "account_no": account["account_no"],
                "account_name": account["name"], "amount": 100 * i, "memo": "充值到账"} for i in (1, 2, 3)]
    data = encode_file(load_layout("disbursement_request"), {
        "batch_no": "1", "business_date": date(2026, 1, 5), "merchant": "DEMO01", "kind": "DF",
        "record_count": 3, "total_amount": 600, "account_no": "98010078801000001"}, records)
    accepted = server.admin.post(f"/files/{APP_ID}/batches/{name}", content=data,
                                 headers={"Content-Type": "application/octet-stream"})
    assert accepted.status_code == 200 and accepted.json()["accepted"], accepted.text
    assert server.admin.post("/clock/advance", json={"by": "3h"}).status_code == 200
    manifest = server.admin.get(f"/batches/{APP_ID}/1").json()
    assert [r["result"] for r in manifest["records"]] == ["S", "S", "S"], manifest
    returns = state / "sftp" / APP_ID / "download" / "returns"
    assert _complete_returns(returns, name[:-4]) == [], f"the {fault} fault left a complete return file"

    # The operator asks the bank to send the return file now.
    forced = server.admin.post(f"/batches/{APP_ID}/1/return")
    assert forced.status_code == 200, (
        f"{fault}: the bank moved the money of batch 1 but the operator cannot get its return "
        f"file: {forced.status_code} {forced.text}")
    assert _complete_returns(returns, name[:-4]) == [["DF1", "DF2", "DF3"]]
