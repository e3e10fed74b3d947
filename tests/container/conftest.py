"""The container group: tests against the ``banksim`` image started with BankSimulatorContainer.

They need a Docker engine and the image (``scripts/container-gate`` provides both), so the
ordinary run does not collect them into the result: every test under this directory is
deselected (and reported as such) unless ``--run-container`` is given (with
``pytest tests/container``) or ``BANKSIM_CONTAINER_TESTS=1`` is set. When they are enabled
and Docker or the image is missing, they fail; they are never skipped.

* ``bank_container``: one container for the session (seed 7, manual clock, accounts open
  ACTIVE); ``admin`` is its control API, reset before the test, with the ledger
  invariants checked after it.
* ``bank_server`` / ``signed_session`` / ``admin_session``: the names the contract suite
  (tests/contract) uses, here backed by a container of the default profile, so its tests can
  be run against the image unchanged (test_contract_in_container.py).
* Start-to-healthy times are printed in the terminal summary (never asserted).

Environment: ``BANKSIM_IMAGE`` (default ``banksim:latest``); testcontainers' own settings,
e.g. ``TESTCONTAINERS_RYUK_DISABLED=true`` where the Ryuk image cannot be pulled.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests

from simulator.testing.container import ADMIN_TOKEN_HEADER, BankSimulatorContainer
from tests.contract.conftest import BankServer, BankSignature

HERE = Path(__file__).resolve().parent
RUN_OPTION = "--run-container"
ENV_SWITCH = "BANKSIM_CONTAINER_TESTS"
SEED = 7
_STARTUPS: list[tuple[str, float]] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    # Only seen when this conftest is an initial one (`pytest tests/container ...`); the
    # environment switch works from anywhere.
    parser.addoption(RUN_OPTION, action="store_true", default=False,
                     help="run the container group (tests/container); needs Docker and the image")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "container: needs Docker and the banksim image (tests/container)")


def _enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("run_container", default=False)) or os.environ.get(ENV_SWITCH) == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees every collected item, not only this directory's.
    ours = [item for item in items if HERE in item.path.parents]
    if not ours:
        return
    if _enabled(config):
        for item in ours:
            item.add_marker(pytest.mark.container)
        return
    chosen = set(map(id, ours))
    config.hook.pytest_deselected(items=ours)
    items[:] = [item for item in items if id(item) not in chosen]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _STARTUPS:
        return
    terminalreporter.section("banksim container start-to-healthy")
    for label, seconds in _STARTUPS:
        terminalreporter.write_line(f"{label}: {seconds:.2f} s")


def image() -> str:
    return os.environ.get("BANKSIM_IMAGE", "banksim:latest")


def record_startup(label: str, seconds: float | None) -> None:
    if seconds is not None:
        _STARTUPS.append((label, seconds))


def container_logs(container: BankSimulatorContainer) -> str:
    stdout, stderr = container.get_logs()
    return (stdout + stderr).decode("utf-8", "replace")


@pytest.fixture(scope="session")
def bank_container() -> Iterator[BankSimulatorContainer]:
    """The session's container: seed 7, manual clock, accounts open ACTIVE."""
    with BankSimulatorContainer(image(), profile={"bank": {"open_active": True}}, seed=SEED,
                                clock="manual") as container:
        record_startup("session container (seed 7, open_active)", container.startup_seconds)
        yield container


@pytest.fixture
def admin(bank_container: BankSimulatorContainer) -> Iterator[httpx.Client]:
    """The control API of the session container, after a reset; invariants checked after."""
    with bank_container.control() as client:
        reset = client.post("/reset")
        assert reset.status_code == 200 and reset.json()["ok"] is True, reset.text
        yield client
        result = client.get("/invariants")
        assert result.status_code == 200, result.text
        assert result.json() == {"ok": True, "violations": []}, result.json()


# -- the contract suite's fixtures, backed by a container --------------------------------------


def contract_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "contract-container.log"


@pytest.fixture(scope="module")
def contract_container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BankSimulatorContainer]:
    """A container of the default profile for the contract suite (one per module)."""
    with BankSimulatorContainer(image()) as container:
        record_startup("contract container (default profile)", container.startup_seconds)
        try:
            yield container
        finally:
            contract_log(tmp_path_factory).write_text(container_logs(container), encoding="utf-8")


@pytest.fixture(scope="module")
def bank_server(contract_container: BankSimulatorContainer,
                tmp_path_factory: pytest.TempPathFactory) -> BankServer:
    """The contract suite's server: the container's URL; its log is written at teardown."""
    return BankServer(url=contract_container.get_http_url(), log=contract_log(tmp_path_factory))


@pytest.fixture(scope="session")
def signed_session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.auth = BankSignature()
        yield session


@pytest.fixture(scope="module")
def admin_session(contract_container: BankSimulatorContainer) -> Iterator[requests.Session]:
    """The control API with the container's token (off loopback a token is required)."""
    with requests.Session() as session:
        session.headers[ADMIN_TOKEN_HEADER] = contract_container.admin_token
        yield session
