"""What a WeChat Pay SDK needs to talk to this channel (``banksim wechat credentials``).

For each merchant of the profile: mchid, appid, the merchant API certificate serial and
private key file (the published development key when the profile holds no key of its own;
a merchant with its own ``merchant_public_key`` keeps its private key to itself), the
APIv3 key, and both platform keys: the platform certificate (serial, PEM) and the WeChat
Pay public key (``PUB_KEY_ID_...``, PEM). ``export`` writes them as files an SDK loads.

Example::

    creds = credentials(load_profile(None), state_dir=Path(".banksim"))
    creds[0]["mchid"], creds[0]["platform_public_key_id"]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contracts.wechat_dev_keys import MERCHANT_PRIVATE_KEY_FILE
from simulator.config import Profile
from simulator.wechat.keys import ChannelKeys


def credentials(profile: Profile, state_dir: Path | None) -> list[dict[str, Any]]:
    keys = ChannelKeys(profile.wechat, state_dir)
    return [{
        "mchid": m.mchid, "appid": m.appid, "merchant_serial": m.merchant_serial,
        "merchant_private_key_file": (None if m.merchant_public_key
                                      else str(MERCHANT_PRIVATE_KEY_FILE)),
        "apiv3_key": m.api_v3_key, "answer_key": m.answer_key,
        "platform_certificate_serial": keys.by_certificate.serial,
        "platform_certificate_expire_time": keys.certificate.not_valid_after_utc.isoformat(),
        "platform_certificate_pem": keys.certificate_pem,
        "platform_public_key_id": keys.by_public_key.serial,
        "platform_public_key_pem": keys.public_key_pem,
    } for m in profile.wechat.merchants]


def export(creds: list[dict[str, Any]], directory: Path) -> list[Path]:
    """Write each merchant's files under ``directory/<mchid>/``; the paths written."""
    written: list[Path] = []
    for c in creds:
        folder = directory / str(c["mchid"])
        folder.mkdir(parents=True, exist_ok=True)
        files = {"wechatpay_cert.pem": c["platform_certificate_pem"],
                 "pub_key.pem": c["platform_public_key_pem"]}
        if c["merchant_private_key_file"]:
            files["apiclient_key.pem"] = Path(c["merchant_private_key_file"]).read_text("ascii")
        for name, text in files.items():
            (folder / name).write_text(text, "ascii")
            written.append(folder / name)
        summary = {k: v for k, v in c.items() if not k.endswith("_pem")}
        if c["merchant_private_key_file"]:
            summary["merchant_private_key_file"] = str(folder / "apiclient_key.pem")
        (folder / "credentials.json").write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
        written.append(folder / "credentials.json")
    return written


def render(creds: list[dict[str, Any]]) -> str:
    """Human-readable text: the settings, then the PEM blocks."""
    out: list[str] = []
    for c in creds:
        out += [f"mchid:                      {c['mchid']}",
                f"appid:                      {c['appid']}",
                f"merchant serial (serial_no): {c['merchant_serial']}",
                f"merchant private key file:  {c['merchant_private_key_file'] or '(your own key)'}",
                f"APIv3 key:                  {c['apiv3_key']}",
                f"answers signed with:        {c['answer_key']} (unless the request's "
                "Wechatpay-Serial names the other)",
                f"platform certificate:       serial {c['platform_certificate_serial']}, expires "
                f"{c['platform_certificate_expire_time']} (also from GET /v3/certificates)",
                f"WeChat Pay public key id:   {c['platform_public_key_id']}",
                "", c["platform_public_key_pem"].rstrip(), ""]
    return "\n".join(out)
