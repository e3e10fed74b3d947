"""The platform client's configuration: a typed model loaded from YAML or TOML and CLI flags.

Defaults are the simulator's default profile's development credentials, so a client
pointed at a local ``banksim serve`` works with no file at all. Durations are clock time
(``"20m"``, ``"2h"``, ``"90s"``, ``"1d"``).

Example::

    >>> cfg = ClientConfig()
    >>> cfg.merchant, cfg.return_poll_interval_seconds
    ('DEMO01', 1200)
    >>> ClientConfig(return_deadline="3h").return_deadline_seconds
    10800
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from contracts.wechat_dev_keys import MERCHANT_SERIAL as DEV_MERCHANT_SERIAL
from contracts.wechat_dev_keys import PUBLIC_KEY_ID as DEV_PUBLIC_KEY_ID
from platform_client.errors import ConfigError

_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")


def parse_duration(text: str) -> int:
    """Seconds in ``"1d2h30m10s"``-style text (any part may be left out).

    >>> parse_duration("1h30m")
    5400
    """
    m = _DURATION.match(text)
    if m is None or not any(m.groups()):
        raise ValueError(f"not a duration like 20m, 2h, 90s or 1d: {text!r}")
    d, h, mi, s = (int(g or 0) for g in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + s


class ClientConfig(BaseModel):
    """Everything the platform client needs to reach the bank, SFTP and WeChat."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The bank's HTTP API and its control API (only used by the bank clock source).
    bank_url: str = "http://127.0.0.1:8600"
    admin_token: str | None = None
    app_id: str = "demo-platform"
    app_secret: str = "banksim-dev-secret"
    merchant: str = "DEMO01"
    supervision_account: str = "98010078801000001"
    settlement_account: str = "31010078801000001"
    http_timeout_s: float = 10.0
    # Attempts per bank call on a timeout, a lost response or 3028/9000 (same serial each time).
    http_attempts: int = 4

    sftp_host: str = "127.0.0.1"
    sftp_port: int = 2222
    sftp_username: str = "demo"
    sftp_password: str = "banksim-dev-sftp"
    sftp_timeout_s: float = 30.0

    # WeChat Pay APIv3 (docs/wechat.md). None: the same server as the bank. The defaults are
    # the published development credentials of banksim's default profile.
    wechat_url: str | None = None
    wechat_mchid: str = "1900000109"
    wechat_appid: str = "wxd678efh567hg6787"
    wechat_api_v3_key: str = "banksimdevapiv3key0123456789abcd"
    # The merchant's API certificate serial and private key (PEM text or a file path;
    # None: contracts/wechat_dev_keys/apiclient_key.pem).
    wechat_serial: str = DEV_MERCHANT_SERIAL
    wechat_private_key: str | None = None
    # WeChat Pay public key mode: its id and key (PEM text or path; None with the published
    # id: contracts/wechat_dev_keys/pub_key.pem). An empty id: platform certificates only,
    # fetched from GET /v3/certificates. Both modes verify whatever serial an answer names.
    wechat_public_key_id: str = DEV_PUBLIC_KEY_ID
    wechat_public_key: str | None = None
    # WeChat's day boundary for bill dates (Beijing time), as in the channel's profile.
    wechat_cutover: str = "00:00"

    notify_host: str = "127.0.0.1"
    notify_port: int = 8700
    # What the channel is told to call; None: http://<notify_host>:<notify_port>/wechat/notify
    notify_url: str | None = None

    return_poll_interval: str = "20m"
    return_deadline: str = "2h"
    store_path: str = "platform.db"
    clock: Literal["system", "bank"] = "system"
    # First batch number this platform uses (batch numbers are unique per platform at the bank).
    batch_no_start: int = 1

    @field_validator("return_poll_interval", "return_deadline")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("wechat_private_key", "wechat_public_key")
    @classmethod
    def _pem(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("wechat_api_v3_key")
    @classmethod
    def _v3_key(cls, value: str) -> str:
        if len(value.encode()) != 32:
            raise ValueError("wechat_api_v3_key must be exactly 32 bytes (an AES-256 key)")
        return value

    @property
    def return_poll_interval_seconds(self) -> int:
        return parse_duration(self.return_poll_interval)

    @property
    def return_deadline_seconds(self) -> int:
        return parse_duration(self.return_deadline)

    @property
    def wechat_base_url(self) -> str:
        return self.wechat_url or self.bank_url

    @property
    def notify_endpoint(self) -> str:
        return self.notify_url or f"http://{self.notify_host}:{self.notify_port}/wechat/notify"

    @property
    def admin_url(self) -> str:
        return self.bank_url.rstrip("/") + "/_admin"


def load_config(path: str | Path | None = None, **overrides: Any) -> ClientConfig:
    """The file's settings (YAML or TOML, by extension) with ``overrides`` (None = not given) on top."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {p}: {exc}") from None
        try:
            loaded = tomllib.loads(text) if p.suffix == ".toml" else yaml.safe_load(text)
        except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"config file {p} is not valid: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping of settings")
        data.update(loaded or {})
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ClientConfig(**data)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
