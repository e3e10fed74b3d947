"""The channel's keys: where they come from, deterministic certificates, the CLI credentials."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from contracts.wechat_dev_keys import MCHID, MERCHANT_SERIAL, PUBLIC_KEY_ID
from contracts.wechat_signing import decrypt_resource, load_public_key, public_pem
from simulator.cli import main
from simulator.config import WechatSettings
from simulator.wechat.keys import STATE_SUBDIR, ChannelKeys
from tests.conftest import make_profile


def test_dev_keys_give_the_same_certificate_everywhere() -> None:
    one, two = ChannelKeys(WechatSettings(), None), ChannelKeys(WechatSettings(), None)
    assert one.certificate_pem == two.certificate_pem
    assert one.by_certificate.serial == "5B1F0E7A2C3D4E5F60718293A4B5C6D7E8F90123"
    assert one.by_public_key.serial == PUBLIC_KEY_ID


def test_state_dir_keys_are_generated_once_private_and_kept(tmp_path: Path) -> None:
    settings = make_profile({"wechat": {"keys": {"source": "state_dir"}}}).wechat
    first = ChannelKeys(settings, tmp_path)
    files = sorted((tmp_path / STATE_SUBDIR).iterdir())
    assert [f.name for f in files] == ["platform_cert_key.pem", "platform_pub_key.pem"]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    again = ChannelKeys(settings, tmp_path)
    assert again.certificate_pem == first.certificate_pem
    assert again.public_key_pem == first.public_key_pem
    assert first.public_key_pem != ChannelKeys(WechatSettings(), None).public_key_pem


def test_certificates_answer_decrypts_to_the_certificate_and_expired_switch(tmp_path: Path) -> None:
    profile = make_profile()
    merchant = profile.wechat.merchants[0]
    keys = ChannelKeys(profile.wechat, None)
    (item,) = keys.certificates_answer(merchant)["data"]
    enc = item["encrypt_certificate"]
    pem = decrypt_resource(merchant.api_v3_key, enc["ciphertext"], enc["associated_data"], enc["nonce"])
    assert pem.decode() == keys.certificate_pem and item["serial_no"] == keys.by_certificate.serial
    switched = make_profile({"wechat": {"keys": {"platform_certificate": "expired"}}})
    expired = ChannelKeys(switched.wechat, None)
    (old,) = expired.certificates_answer(merchant)["data"]
    assert old["expire_time"].startswith("2020-01-01") and old["serial_no"] != item["serial_no"]
    assert expired.signer(merchant, None).serial == old["serial_no"]


def test_the_request_serial_chooses_the_answer_key() -> None:
    profile = make_profile()
    merchant = profile.wechat.merchants[0]
    keys = ChannelKeys(profile.wechat, None)
    assert keys.signer(merchant, None) is keys.by_certificate
    assert keys.signer(merchant, PUBLIC_KEY_ID) is keys.by_public_key
    assert keys.signer(merchant.model_copy(update={"answer_key": "public_key"}), None) is keys.by_public_key


def test_cli_credentials_print_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["wechat", "credentials", "--state-dir", str(tmp_path / "state")]) == 0
    out = capsys.readouterr().out
    for needle in (MCHID, MERCHANT_SERIAL, PUBLIC_KEY_ID, "apiclient_key.pem", "BEGIN PUBLIC KEY"):
        assert needle in out
    assert main(["wechat", "credentials", "--export", str(tmp_path / "creds")]) == 0
    folder = tmp_path / "creds" / MCHID
    summary = json.loads((folder / "credentials.json").read_text())
    assert summary["merchant_serial"] == MERCHANT_SERIAL
    assert summary["merchant_private_key_file"] == str(folder / "apiclient_key.pem")
    assert public_pem(load_public_key(folder / "pub_key.pem")) == \
        ChannelKeys(WechatSettings(), None).public_key_pem
    assert "BEGIN CERTIFICATE" in (folder / "wechatpay_cert.pem").read_text()
