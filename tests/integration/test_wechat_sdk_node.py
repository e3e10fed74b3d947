"""The npm SDK ``wechatpay-axios-plugin`` against a real ``banksim serve``.

The test installs the package with npm from the npm registry into a temporary directory
(Node >= 18 and npm on PATH; CI machines reach the registry). If npm cannot install it,
the test fails and says why: nothing is skipped. The SDK is pointed at banksim with
``baseURL``, an axios option its constructor documents; everything else is the SDK's own
code: request signing, answer verification (``certs`` keyed by the platform certificate
serial), and its ``Rsa.verify`` / ``Aes.AesGcm.decrypt`` on the notification.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from contracts.wechat_dev_keys import APIV3_KEY, APPID, MCHID, MERCHANT_PRIVATE_KEY_FILE, MERCHANT_SERIAL
from simulator.config import load_profile
from simulator.wechat.credentials import credentials
from tests.integration.conftest import BankServer
from tests.integration.test_wechat_channel import Receiver, Wechat, receiver

pytestmark = [pytest.mark.network, pytest.mark.slow]
__all__ = ["receiver"]
PACKAGE = "wechatpay-axios-plugin@^0.9.6"
SCRIPT = Path(__file__).parent / "sdk" / "wechatpay_axios_plugin.js"
INSTALL_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def node_sdk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.fail("the npm SDK test needs Node.js (>= 18) and npm on PATH")
    folder = tmp_path_factory.mktemp("npm-sdk")
    try:
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(folder), PACKAGE],
                              capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"npm install {PACKAGE} did not finish in {INSTALL_TIMEOUT_S} s: is the npm "
                    "registry reachable (npm config get registry)?")
    if done.returncode != 0:
        pytest.fail(f"npm install {PACKAGE} failed (is the npm registry reachable?):\n"
                    f"{done.stderr[-2000:]}")
    shutil.copy(SCRIPT, folder / SCRIPT.name)
    return folder


def _node(folder: Path, phase: str, settings: dict[str, Any]) -> dict[str, Any]:
    (folder / "settings.json").write_text(json.dumps(settings), "utf-8")
    done = subprocess.run(["node", SCRIPT.name, phase, "settings.json"], cwd=folder,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip(), done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ok"] and done.returncode == 0, result
    return result


def test_wechatpay_axios_plugin_top_up_life_cycle(node_sdk: Path, server: BankServer,
                                                  receiver: Receiver) -> None:
    creds = credentials(load_profile(None), None)[0]
    settings = {"base_url": server.url + "/", "mchid": MCHID, "appid": APPID,
                "merchant_serial": MERCHANT_SERIAL, "private_key_file": str(MERCHANT_PRIVATE_KEY_FILE),
                "apiv3_key": APIV3_KEY, "platform_certificate_serial": creds["platform_certificate_serial"],
                "platform_certificate_pem": creds["platform_certificate_pem"],
                "out_trade_no": "SDK-NODE-0001", "total": 3300, "notify_url": receiver.url}
    created = _node(node_sdk, "create", settings)
    assert created["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert created["trade_state"] == "NOTPAY"

    control = Wechat(server)
    paid = control.pay("SDK-NODE-0001")
    made = control.admin.post("/wechat/notifications/deliver").json()["attempts"]
    assert [m["outcome"] for m in made] == ["SUCCESS"]
    (note,) = receiver.by_order("SDK-NODE-0001")

    settings["notification"] = {"headers": note.headers, "body": note.body.decode()}
    checked = _node(node_sdk, "verify", settings)
    assert checked["verified"] is True and checked["tampered"] is False
    assert (checked["resource"]["out_trade_no"], checked["resource"]["amount"]["total"]) == \
        ("SDK-NODE-0001", 3300)
    assert checked["resource"]["transaction_id"] == paid["transaction_id"]
    assert (checked["trade_state"], checked["by_id"]) == ("SUCCESS", "SDK-NODE-0001")
