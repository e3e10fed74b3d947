"""The platform client and the everyday tools, attacked as an outsider uses them.

The CLIs run as subprocesses against a real ``banksim serve`` (free loopback ports), the
pytest plugin runs in a pytester subprocess, the step catalogue on a copy of ``features/``
with one more scenario. Each test pins one class of defect:

* ``withhold --date D`` before D is reconciled (top-ups first);
* re-submitting a 3008 failure before the 98 account covers it;
* an ID image the bank refused, reported without the bank's reason;
* tracebacks from the CLIs (unreadable profile, a closed pipe);
* ``banksim events`` showing the oldest events silently, with no filters;
* the step catalogue going stale when a scenario is added;
* tests sharing one bank unless they asked for a reset;
* in-memory banks leaving ``banksim-files-*`` directories behind;
* docs citing a domain guide outside the repository; the withholding agreement unseen.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from platform_client.clock import BankClock
from platform_client.config import ClientConfig
from platform_client.context import Context
from platform_client.errors import StepRefused
from platform_client.onboarding import open_account, register_user, upload_images
from platform_client.payouts import disburse, poll_returns, resubmit
from simulator.testing.bank_api import BankApiClient
from simulator.testing.handle import SimulatorHandle
from tests.platform_client.bank import ROOT, Bank, identity, start_bank
from tests.platform_client.scenario import paid_and_reconciled, records

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.network

BIN = Path(sys.executable).parent
SUPERVISION = "98010078801000001"
DAY = "2026-01-04"  # a day before the bank's first business date (2026-01-05)
RUN_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bank]:
    bank = start_bank(tmp_path_factory.mktemp("bank"))
    try:
        yield bank
    finally:
        bank.stop()


@pytest.fixture
def bank(served: Bank) -> Bank:
    served.call("POST", "/reset")
    return served


@pytest.fixture
def ctx(bank: Bank, tmp_path: Path) -> Iterator[Context]:
    config = ClientConfig(bank_url=bank.url, sftp_port=bank.sftp_port, clock="bank",
                          store_path=str(tmp_path / "platform.db"), sftp_timeout_s=20.0)
    context = Context.create(config, clock=BankClock(config.admin_url))
    yield context
    context.close()


def run(*args: str, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                          env=env, cwd=cwd, check=False)


def platform_client(bank: Bank, store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(str(BIN / "platform-client"), "--store", str(store), "--bank-url", bank.url,
               "--sftp-port", str(bank.sftp_port), "--clock", "bank", *args)


def one_line_error(result: subprocess.CompletedProcess[str], prefix: str) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr
    return lines[0]


# -- 6. the platform client ----------------------------------------------------------------


def test_withholding_is_refused_while_its_day_is_not_reconciled(bank: Bank, tmp_path: Path) -> None:
    store = tmp_path / "p.db"
    assert platform_client(bank, store, "init").returncode == 0
    result = platform_client(bank, store, "withhold", "--date", "2026-01-05")
    assert result.returncode == 1, result.stdout
    line = one_line_error(result, "platform-client: step_refused: top-ups first")
    assert "2026-01-05 has not been reconciled" in line


def test_a_3008_failure_is_not_resent_until_the_98_account_covers_it(bank: Bank, ctx: Context) -> None:
    register_user(ctx, "ann", identity(31))
    open_account(ctx, "ann")
    upload_images(ctx, "ann")
    bank.advance("30m")  # images approved
    paid_and_reconciled(ctx, DAY, [("ann", "T-ANN-1", 10000)])  # the 98 account holds nothing

    first = disburse(ctx, DAY)
    assert first is not None
    bank.advance("25m")
    poll_returns(ctx)
    [failed] = records(ctx, first)
    assert (failed["state"], failed["code"]) == ("FAILED", "3008")

    held = resubmit(ctx)
    assert held.batches == [], "a 3008 failure went again while the 98 account was still empty"
    assert "fund it first" in held.held[failed["serial"]]

    bank.deposit(SUPERVISION, "60.00")  # still short of 100.00
    assert resubmit(ctx).batches == []

    bank.deposit(SUPERVISION, "40.00")
    again = resubmit(ctx)
    assert len(again.batches) == 1 and not again.held
    bank.advance("25m")
    poll_returns(ctx)
    assert [r["state"] for r in records(ctx, again.batches[0])] == ["SUCCESS"]


def test_a_refused_image_is_reported_with_the_banks_reason(bank: Bank, ctx: Context, tmp_path: Path) -> None:
    register_user(ctx, "bo", identity(32))
    open_account(ctx, "bo")
    with pytest.raises(StepRefused, match="neither a JPEG nor a PNG"):
        upload_images(ctx, "bo", front=b"%PDF-1.4 this is not a picture" * 100)
    reason = ctx.store.scalar("SELECT image_reason FROM users WHERE user_id = 'bo'")
    assert "neither a JPEG nor a PNG" in reason

    # The same from the command line, with a file of the operator's.
    store = tmp_path / "cli.db"
    n = identity(33)
    assert platform_client(bank, store, "register", "--user", "cy", "--name", n["name"], "--id-number",
                           n["id_number"], "--mobile", n["mobile"], "--card",
                           n["bound_card_number"]).returncode == 0
    assert platform_client(bank, store, "open-account", "--user", "cy").returncode == 0
    scan = tmp_path / "front.png"
    scan.write_bytes(b"GIF89a not what the bank takes" * 100)
    result = platform_client(bank, store, "upload-images", "--user", "cy", "--front", str(scan))
    assert result.returncode == 1
    assert "neither a JPEG nor a PNG" in one_line_error(result, "platform-client: step_refused:")
    bank.advance("30m")  # the review must not have turned it into "image missing" either
    account = platform_client(bank, store, "account", "--user", "cy")
    assert "neither a JPEG nor a PNG" in account.stdout


# -- 7. the command line -------------------------------------------------------------------


def test_an_unreadable_profile_is_a_one_line_error(tmp_path: Path) -> None:
    result = run(str(BIN / "banksim"), "serve", "--ephemeral", "--http-port", "0",
                 "--profile", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert "missing.yaml" in one_line_error(result, "banksim:")
    result = run(str(BIN / "platform-client"), "--config", str(tmp_path / "missing.yaml"), "init")
    assert result.returncode == 1
    one_line_error(result, "platform-client:")


def _open_accounts(bank: Bank, count: int) -> list[str]:
    numbers = []
    with BankApiClient.for_handle(SimulatorHandle(http_url=bank.url)) as api:
        for n in range(count):
            answer = api.open_account(f"OPEN-EV-{n}", identity(40 + n))
            assert answer.status_code == 200, answer.text
            numbers.append(answer.json()["data"]["account_no"])
    return numbers


def _closed_pipe(args: list[str]) -> tuple[int, str]:
    """Run ``args`` with stdout a pipe whose reader is gone (``| head`` that already quit)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(args, stdout=write_end, stderr=subprocess.PIPE, text=True,
                              timeout=RUN_TIMEOUT_S, check=False)
    finally:
        os.close(write_end)
    return proc.returncode, proc.stderr


def test_a_closed_pipe_stops_the_clis_quietly(bank: Bank, tmp_path: Path) -> None:
    _open_accounts(bank, 1)  # something on the timeline to print
    for args in ([str(BIN / "banksim"), "profile", "default"],
                 [str(BIN / "banksim"), "events", "--url", bank.url],
                 [str(BIN / "platform-client"), "--store", str(tmp_path / "p.db"), "init"]):
        status, stderr = _closed_pipe(args)
        assert (status, stderr) == (141, ""), f"{args[1:]}: exit {status}\n{stderr}"


def _event_ids(stdout: str) -> list[int]:
    return [int(line.split()[0]) for line in stdout.splitlines() if line.strip()]


def test_events_show_the_newest_say_what_is_left_out_and_filter(bank: Bank) -> None:
    accounts = _open_accounts(bank, 4)
    everything = bank.call("GET", "/events?limit=10000")
    newest = everything[-1]["id"]

    shown = run(str(BIN / "banksim"), "events", "--url", bank.url, "--limit", "3")
    assert shown.returncode == 0, shown.stderr
    assert _event_ids(shown.stdout) == [e["id"] for e in everything[-3:]]
    assert f"{len(everything) - 3} older event(s) not shown" in shown.stderr

    mine = run(str(BIN / "banksim"), "events", "--url", bank.url, "--account", accounts[2])
    assert mine.returncode == 0, mine.stderr
    lines = mine.stdout.splitlines()
    assert lines and all(accounts[2] in line for line in lines)
    assert all(accounts[1] not in line for line in lines)

    by_serial = run(str(BIN / "banksim"), "events", "--url", bank.url, "--serial", "OPEN-EV-1")
    kinds = {line.split()[3] for line in by_serial.stdout.splitlines()}
    assert kinds == {"request", "account.opened"}, by_serial.stdout

    # A refused batch file: found by its number, not by another.
    name = "DF_DEMO01_20260105_7.txt"
    handed = httpx.post(f"{bank.url}/_admin/files/demo-platform/batches/{name}", content=b"not a batch",
                        headers={"content-type": "application/octet-stream"},
                        timeout=10)
    assert handed.status_code == 200, handed.text
    batch = httpx.get(f"{bank.url}/_admin/events", params={"batch": 7}, timeout=10)
    assert batch.json() and all(name in (e["ref"] or "") + str(e["detail"]) for e in batch.json())
    assert httpx.get(f"{bank.url}/_admin/events", params={"batch": 8}, timeout=10).json() == []
    assert httpx.get(f"{bank.url}/_admin/events", params={"order": "NO-SUCH-ORDER"},
                     timeout=10).json() == []

    page = httpx.get(f"{bank.url}/_admin/events", params={"since_id": 0, "limit": 2}, timeout=10)
    assert int(page.headers["X-Events-More"]) > 0 and page.json()[0]["id"] <= newest


# -- 7. the suite and its tools -----------------------------------------------------------------


def test_a_new_scenario_with_existing_steps_keeps_the_catalogue_current(tmp_path: Path) -> None:
    copy = tmp_path / "features"
    shutil.copytree(ROOT / "features", copy, ignore=shutil.ignore_patterns("__pycache__"))
    added = copy / "aaa_added"  # sorts before every existing directory
    added.mkdir()
    (added / "added.feature").write_text(
        "Feature: a scenario added by a team\n\n"
        "  Scenario: another person\n"
        "    Given a user 王五 with an active Class III account\n", "utf-8")
    (added / "added_zh.feature").write_text(
        "# language: zh-CN\n功能: 新加的场景\n\n  场景: 另一个人\n    假如用户赵六已开立正常状态的三类账户\n",
        "utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = run(sys.executable, "-m", "features.catalogue", "--check", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


INNER_TESTS = '''
import pytest

IDENTITY = {"name": "张三", "id_number": "310101199003071230", "mobile": "13800138000",
            "bound_card_number": "6222020000000000422", "bound_card_kind": "DEBIT_I"}


def test_open(bank_api, banksim_control):
    assert bank_api.open_account("OPEN-1", IDENTITY).json()["data"]["withholding_agreement"]
    assert len(banksim_control.accounts(kind="CLASS_III")) == 1


def test_next(banksim_control):
    assert banksim_control.accounts(kind="CLASS_III") == []


def test_open_again(bank_api):
    assert bank_api.open_account("OPEN-2", IDENTITY).status_code == 200


@pytest.mark.banksim_shared
def test_shared_sees_what_the_last_test_left(banksim_control):
    assert len(banksim_control.accounts(kind="CLASS_III")) == 1
'''


def test_each_test_gets_a_fresh_bank_unless_marked_shared(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-p", "no:randomly",
                                           timeout=180)
    result.assert_outcomes(passed=4)


def test_in_memory_banks_leave_no_directories_behind(tmp_path: Path) -> None:
    script = (
        "from simulator.bank import Bank\n"
        "from simulator.config import load_profile\n"
        "closed = Bank(load_profile(None), None)\n"
        "closed.reset()\n"
        "closed.close()\n"
        "kept = Bank(load_profile(None), None)  # never closed: removed when the process ends\n")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = run(sys.executable, "-c", script, env={**os.environ, "TMPDIR": str(scratch)}, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in scratch.iterdir()) == []


def _tracked_text_files() -> list[Path]:
    listed = run("git", "ls-files", cwd=ROOT)
    if listed.returncode != 0:
        pytest.fail(f"git ls-files: {listed.stderr}")
    return [ROOT / name for name in listed.stdout.splitlines()
            if name.endswith((".md", ".yaml", ".yml", ".py", ".toml", ".feature"))]


def test_the_domain_guide_is_in_the_repository_and_cited_there() -> None:
    guide = ROOT / "docs" / "domain.md"
    assert guide.is_file()
    outside = re.compile(r"DOMAIN\.md|/work/shared|/work/main")
    this_file = Path(__file__).resolve()
    cited = [f"{p.relative_to(ROOT)}:{n}" for p in _tracked_text_files() if p.resolve() != this_file
             for n, line in enumerate(p.read_text("utf-8", "replace").splitlines(), 1)
             if outside.search(line)]
    assert cited == []
    text = guide.read_text("utf-8")
    assert "withholding agreement" in text and "withholding_agreement" in text


def test_the_account_query_shows_the_withholding_agreement(bank: Bank) -> None:
    [account_no] = _open_accounts(bank, 1)
    with BankApiClient.for_handle(SimulatorHandle(http_url=bank.url)) as api:
        def agreement() -> Any:
            answer = api.query_account(account_no)
            assert answer.status_code == 200, answer.text
            return answer.json()["data"]["withholding_agreement"]

        assert agreement() is True  # every account is opened with one
        bank.call("POST", f"/accounts/{account_no}/agreement", {"active": False})
        assert agreement() is False
