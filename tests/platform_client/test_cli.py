"""The ``platform-client`` command line against a real bank."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from platform_client.cli import main
from tests.platform_client.bank import Bank, identity

pytestmark = pytest.mark.network


def run(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str, str]:
    status = main(args)
    out, err = capsys.readouterr()
    return status, out, err


def test_steps_from_the_command_line(bank: Bank, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "platform.yaml"
    config.write_text(f"bank_url: {bank.url}\nsftp_port: {bank.sftp_port}\nclock: bank\n"
                      f"store_path: {tmp_path / 'p.db'}\n", "utf-8")
    base = ["--config", str(config)]
    assert json.loads(run(capsys, [*base, "init"])[1])["schema_version"] == 1
    person = identity(71)
    status, _, _ = run(capsys, [*base, "register", "--user", "u1", "--name", person["name"], "--id-number",
                                person["id_number"], "--mobile", person["mobile"], "--card",
                                person["bound_card_number"]])
    assert status == 0
    status, out, _ = run(capsys, [*base, "open-account", "--user", "u1", "--images"])
    assert status == 0 and json.loads(out)["images_uploaded"] is True
    bank.advance("30m")
    assert json.loads(run(capsys, [*base, "account", "--user", "u1"])[1])["image_status"] == "APPROVED"

    status, _, err = run(capsys, [*base, "disburse", "--date", "2026-01-04"])
    assert status == 1 and "step_refused" in err and "reconcile first" in err
    status, _, err = run(capsys, [*base, "approve", "--date", "2026-01-04", "--by", "ops.li"])
    assert status == 1 and "nothing to approve" in err
    status, out, _ = run(capsys, [*base, "check-balances"])
    assert status == 0 and json.loads(out)["ok"] is True
    status, out, _ = run(capsys, [*base, "report", "--date", "2026-01-05"])
    assert status == 0 and "Platform report for 2026-01-05" in out and "Balance check: OK" in out
    with pytest.raises(SystemExit):
        main([*base, "topup", "--user", "u1", "--order", "X", "--amount", "1.5"])  # not a yuan amount
