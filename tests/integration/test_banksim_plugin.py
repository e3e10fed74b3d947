"""The banksim pytest plugin, run on a small test file of its own (pytester, subprocess).

Checked in one inner session (one embedded simulator): a passing test; a failing test
whose report carries the simulator's timeline and files; a test that breaks the ledger
invariants and gets an error at teardown naming the violation; a test that uses no
simulator fixture and is left alone; and that ``banksim_reset`` gives each test a fresh bank.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.network

INNER = '''
from simulator.testing.control import ControlClient

IDENTITY = {"name": "张三", "id_number": "310101199003071230", "mobile": "13800138000",
            "bound_card_number": "6222020000000000422", "bound_card_kind": "DEBIT_I"}


def test_opens(banksim_reset, bank_api):
    answer = bank_api.open_account("OPEN-1", IDENTITY)
    assert answer.status_code == 200, answer.text


def test_fresh_bank_each_time(banksim_reset):
    assert banksim_reset.accounts(kind="CLASS_III") == []


def test_fails_with_a_trail(banksim_reset, bank_api, banksim_sftp):
    bank_api.open_account("OPEN-TRAIL", IDENTITY)
    banksim_sftp.write("/upload/batches/DF_DEMO01_20260105_5.txt", b"not a batch file")
    assert False, "deliberate"


def test_violation_is_a_teardown_error(banksim_reset, monkeypatch):
    broken = {"ok": False, "violations": [{"rule": "money-conserved", "where": "all accounts"}]}
    monkeypatch.setattr(ControlClient, "invariants", lambda self: broken)


def test_untouched():
    assert True
'''


def test_plugin_fixtures_checks_and_failure_trail(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q",
                                           "-rA", "--banksim-seed", "7", timeout=180)
    result.assert_outcomes(passed=4, failed=1, errors=1)
    out = result.stdout.str()
    # The failing test's report: the timeline (the opening) and the files (the upload and
    # the rejection file the bank wrote for it, with its first lines).
    assert "banksim timeline" in out and "account.opened" in out and "OPEN-TRAIL" in out
    assert "banksim files" in out and "/upload/batches/DF_DEMO01_20260105_5.txt" in out
    assert "DF_DEMO01_20260105_5_REJ.txt" in out
    # The violation: an error at teardown that lists it.
    assert "ERROR at teardown of test_violation_is_a_teardown_error" in out
    assert "banksim ledger invariants violated" in out and "money-conserved" in out
    # Only those two tests got a trail or a teardown check.
    assert out.count("banksim timeline") == 1


def test_url_mode_needs_a_url(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner="def test_x(banksim):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--banksim=url", timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--banksim=url needs --banksim-url" in result.stderr.str()
