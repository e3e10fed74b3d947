"""The image as a container: health, the control API's token, profile and seed, the user.

Each test talks to a container started by BankSimulatorContainer (conftest.py) over the
ports it publishes on 127.0.0.1; nothing here waits out a business delay.
"""

from __future__ import annotations

import httpx

from contracts.signing import sign_headers
from simulator.store import DB_FILENAME
from simulator.testing.container import ADMIN_TOKEN_HEADER, BankSimulatorContainer
from tests.container.conftest import SEED, image, record_startup
from tests.integration.conftest import make_identity


def test_health_answers_when_started(bank_container: BankSimulatorContainer) -> None:
    response = httpx.get(bank_container.get_http_url() + "/health", timeout=5)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    with bank_container.control() as admin:
        clock = admin.get("/clock").json()
    assert body["clock"] == clock["now"]  # the bank's virtual clock, not the wall clock
    assert clock["mode"] == "manual"
    assert bank_container.startup_seconds is not None


def test_control_api_needs_the_token(bank_container: BankSimulatorContainer) -> None:
    url = bank_container.get_http_url() + "/_admin/clock"
    missing = httpx.get(url, timeout=5)
    wrong = httpx.get(url, headers={ADMIN_TOKEN_HEADER: "not-the-token"}, timeout=5)
    for refused in (missing, wrong):
        assert refused.status_code in (401, 403), refused.text
        assert refused.json()["code"] == "1030"
    with bank_container.control() as admin:
        clock = admin.get("/clock")
    assert clock.status_code == 200, clock.text


def test_profile_and_seed_reach_the_container(bank_container: BankSimulatorContainer) -> None:
    with bank_container.control() as admin:
        profile = admin.get("/profile").json()
    assert profile["seed"] == SEED
    assert profile["bank"]["open_active"] is True
    # Keys the patch left out keep the packaged defaults (the magic values stay).
    assert profile["bank"]["identity_rules"][0]["reject"] == "2012"
    handle = bank_container.handle()
    assert (handle.app_id, handle.secret) == (profile["platforms"][0]["app_id"],
                                              profile["platforms"][0]["secret"])
    assert handle.admin_token == bank_container.admin_token
    assert handle.http_url == bank_container.get_http_url()
    assert (handle.sftp_host, handle.sftp_port) == (bank_container.get_sftp_host(),
                                                    bank_container.get_sftp_port())


def test_ports_are_published_on_loopback_only(bank_container: BankSimulatorContainer) -> None:
    bindings = bank_container.get_wrapped_container().attrs["HostConfig"]["PortBindings"]
    assert sorted(bindings) == ["2222/tcp", "8600/tcp"]
    if bank_container.get_sftp_host() == "127.0.0.1":
        assert {b["HostIp"] for v in bindings.values() for b in v} == {"127.0.0.1"}


def test_the_server_runs_as_an_unprivileged_user(bank_container: BankSimulatorContainer) -> None:
    result = bank_container.exec(["id", "-u"])
    assert result.exit_code == 0, result.output
    assert result.output.decode().strip() == "10001"
    # The state (database, SFTP host key) is in the volume and belongs to that user.
    state = bank_container.exec(["stat", "-c", "%U %n", f"/var/lib/banksim/{DB_FILENAME}",
                                 "/var/lib/banksim/ssh_host_ed25519_key"])
    assert state.exit_code == 0, state.output
    assert [line.split()[0] for line in state.output.decode().splitlines()] == ["banksim", "banksim"]


def _open(url: str, app_id: str, secret: str, serial: str) -> httpx.Response:
    body = httpx.Request("POST", "/", json={"request_serial": serial, **make_identity(4242)}).content
    headers = sign_headers(app_id, secret, "POST", "/api/v1/accounts/open", body)
    return httpx.post(url + "/api/v1/accounts/open", content=body, timeout=10,
                      headers={**headers, "Content-Type": "application/json"})


def test_same_seed_same_account_numbers_in_a_new_container(
        bank_container: BankSimulatorContainer) -> None:
    with bank_container.control() as admin:
        assert admin.post("/reset").status_code == 200
    first = bank_container.handle()
    answer = _open(first.http_url, first.app_id, first.secret, "SEED-1")
    assert answer.status_code == 200, answer.text

    with BankSimulatorContainer(image(), profile={"bank": {"open_active": True}}, seed=SEED) as twin:
        record_startup("second container (seed 7)", twin.startup_seconds)
        again = _open(twin.get_http_url(), first.app_id, first.secret, "SEED-1")
    assert again.status_code == 200, again.text
    assert again.json()["data"]["account_no"] == answer.json()["data"]["account_no"]
    with bank_container.control() as admin:
        assert admin.get("/invariants").json()["ok"] is True
