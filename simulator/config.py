"""The profile: everything about the bank's behaviour that a test or a user may change.

A profile is YAML, validated at load into typed models so a mistake is reported with
its location (``http_faults.rules.0.match.attempt: ...``) instead of surfacing later as
odd behaviour. The packaged ``profiles/default.yaml`` is the embedded default: with no
file at all the simulator starts with it. Money in profiles is a yuan string with two
decimals (``"2000.00"``), never a float.

Example::

    profile = load_profile(None)                # the packaged default
    profile = load_profile(Path("my.yaml"))     # a file of your own (missing keys default)
    profile = profile_from_dict({**profile.as_dict(), "seed": 7})
"""

from __future__ import annotations

import re
from datetime import datetime, time
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from contracts.codes import CODES
from contracts.money import AmountFormatError, format_fen, parse_yuan
from contracts.wechat_dev_keys import MERCHANT_SERIAL as DEV_MERCHANT_SERIAL
from contracts.wechat_dev_keys import PUBLIC_KEY_ID as DEV_PUBLIC_KEY_ID
from contracts.yamltext import load as yaml_load


class ProfileError(ValueError):
    """The profile is invalid; the message lists every problem with its location."""


def _to_fen(value: Any) -> int:
    if isinstance(value, (bool, float)):
        raise ValueError("money must be a yuan string like \"2000.00\", not a number")
    if isinstance(value, int):
        return value * 100
    try:
        return parse_yuan(str(value))
    except AmountFormatError as exc:
        raise ValueError(str(exc)) from None


# Money fields accept "2000.00" (or a whole number of yuan), hold integer fen, and dump
# back to the yuan string, so a profile survives a round trip through JSON unchanged.
Fen = Annotated[int, BeforeValidator(_to_fen), PlainSerializer(format_fen, when_used="json")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccountClassLimits(_Model):
    balance_cap: Fen = Field(default=200_000, description="largest balance the account may hold")
    daily_outflow: Fen = 200_000
    annual_outflow: Fen = 5_000_000


def _check_regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
    return value


class IdentityMatch(_Model):
    """Fields of an opening request to match; regexes must match the whole value."""

    id_number: str | None = None
    name: str | None = None
    mobile: str | None = None
    bound_card_number: str | None = None

    _regexes = field_validator("id_number", "name", "mobile", "bound_card_number")(
        classmethod(lambda cls, v: _check_regex(v))
    )


class IdentityRule(_Model):
    """Reject openings that match (and do not match ``not``) with a 2xxx code."""

    name: str = ""
    match: IdentityMatch
    not_: IdentityMatch | None = Field(default=None, alias="not")
    reject: str

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("reject")
    @classmethod
    def _known_opening_code(cls, value: str) -> str:
        if value not in CODES or not value.startswith("2"):
            raise ValueError(f"reject must be an opening code (2xxx) of the code table, not {value!r}")
        return value


class BankPolicy(_Model):
    name: str = "沪上模拟银行"
    bin: str = Field(default="623188", pattern=r"^[0-9]{6}$")
    open_active: bool = False
    min_age: int = Field(default=18, ge=0, le=120)
    max_accounts_per_id: int = Field(default=5, ge=1)
    class_iii: AccountClassLimits = AccountClassLimits()
    identity_rules: list[IdentityRule] = []


class ClockSettings(_Model):
    mode: str = "manual"
    start: datetime = datetime.fromisoformat("2026-01-05T09:00:00+08:00")
    cutover: time = time(0, 0)

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if not re.fullmatch(r"manual|realtime|accelerated:[0-9]+(\.[0-9]+)?", value):
            raise ValueError("mode must be manual, realtime or accelerated:N")
        return value

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("start needs an offset, e.g. 2026-01-05T09:00:00+08:00")
        return value


class SecuritySettings(_Model):
    signature_window_seconds: int = Field(default=300, ge=1)
    max_body_bytes: int = Field(default=65_536, ge=1024)


class SftpUser(_Model):
    """A platform's SFTP login: password and/or OpenSSH public keys (authorized_keys lines)."""

    username: str = Field(pattern=r"^[a-z_][a-z0-9_.-]{0,31}$")
    password: str | None = Field(default=None, min_length=8)
    authorized_keys: list[str] = []


class Platform(_Model):
    app_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    secret: str = Field(min_length=8)
    name: str
    supervision_account: str = Field(pattern=r"^[0-9]{10,32}$")
    settlement_account: str = Field(pattern=r"^[0-9]{10,32}$")
    supervision_opening_balance: Fen = 0
    sftp: SftpUser | None = None
    # Merchant code used in batch file names (DF_<merchant>_<yyyymmdd>_<batch>.txt).
    merchant: str = Field(default="", pattern=r"^[A-Z0-9]{0,16}$")


class FaultMatch(_Model):
    """What a fault rule looks at; regexes must match the whole value."""

    operation: list[str] | None = None
    method: str | None = None
    path: str | None = None
    serial: str | None = None
    app_id: str | None = None
    body: dict[str, str] | None = None
    attempt: int | None = Field(default=None, ge=1, description="applies up to this attempt")

    _regexes = field_validator("path", "serial")(classmethod(lambda cls, v: _check_regex(v)))

    @field_validator("operation", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("operation")
    @classmethod
    def _known_operations(cls, value: list[str] | None) -> list[str] | None:
        from simulator.operations import OPERATION_NAMES

        for op in value or []:
            if op not in OPERATION_NAMES:
                raise ValueError(f"unknown operation {op!r}; known: {sorted(OPERATION_NAMES)}")
        return value


class FaultAction(_Model):
    error: str | None = None
    latency_ms: int | None = Field(default=None, ge=0)
    hold_ms: int | None = Field(default=None, ge=0)
    lose_response: bool = False

    @field_validator("error")
    @classmethod
    def _known_code(cls, value: str | None) -> str | None:
        if value is not None and (value not in CODES or value == "0000"):
            raise ValueError(f"error must be a failure code of the code table, not {value!r}")
        return value


class FaultRule(_Model):
    name: str = ""
    match: FaultMatch = FaultMatch()
    not_: FaultMatch | None = Field(default=None, alias="not")
    action: FaultAction

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ErrorRate(_Model):
    rate: float = Field(default=0.0, ge=0.0, le=1.0)
    code: str = "3028"


class HoldRate(_Model):
    rate: float = Field(default=0.0, ge=0.0, le=1.0)
    ms: int = Field(default=5_000, ge=0)


class Latency(_Model):
    distribution: Literal["none", "fixed", "uniform", "lognormal"] = "none"
    ms: int = Field(default=0, ge=0)
    min_ms: int = Field(default=0, ge=0)
    max_ms: int = Field(default=0, ge=0)
    median_ms: float = Field(default=0.0, ge=0.0)
    sigma: float = Field(default=0.5, ge=0.0)


class FaultRates(_Model):
    error: ErrorRate = ErrorRate()
    lose_response: float = Field(default=0.0, ge=0.0, le=1.0)
    hold: HoldRate = HoldRate()


class HttpFaults(_Model):
    latency: Latency = Latency()
    rules: list[FaultRule] = []
    rates: FaultRates = FaultRates()


class SftpSettings(_Model):
    max_upload_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    # Login refusals and dropped connections at a seeded rate (file-level faults).
    refuse_login_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    drop_upload_rate: float = Field(default=0.0, ge=0.0, le=1.0)


class ImageSettings(_Model):
    max_bytes: int = Field(default=5 * 1024 * 1024, ge=1)
    min_bytes: int = Field(default=1024, ge=1, description="smaller images are unreadable")
    review_delay: str = "30m"


class RecordMatch(_Model):
    """What a record outcome rule looks at; regexes must match the whole value."""

    kind: Literal["DF", "DK"] | None = None
    batch_no: str | None = None
    serial: str | None = None
    account_no: str | None = None
    account_name: str | None = None
    amount: Fen | None = None
    amount_min: Fen | None = None
    amount_max: Fen | None = None
    amount_cents: str | None = Field(default=None, pattern=r"^[0-9]{2}$")
    position: int | None = Field(default=None, ge=1, description="the record's seq in its file")
    attempt: int | None = Field(
        default=None, ge=1,
        description="applies up to this attempt: a record's attempt is 1 + the failed records "
                    "of earlier-processed batches of the platform with the same kind, account "
                    "and amount (a re-submission gets a new serial, so those name the retry)")

    _regexes = field_validator("batch_no", "serial", "account_no", "account_name")(
        classmethod(lambda cls, v: _check_regex(v))
    )


class RecordAction(_Model):
    fail: str
    reason: str | None = None
    # A seeded rate scoped by the rule's match: the rule applies to a matching record with
    # this probability (keyed by seed, platform, batch, serial and the rule's index), and a
    # record it spares goes on to the next rules. 1 (the default) always applies.
    probability: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("fail")
    @classmethod
    def _record_code(cls, value: str) -> str:
        if value not in CODES or not value.startswith("3"):
            raise ValueError(f"fail must be a record code (3xxx) of the code table, not {value!r}")
        return value


class RecordRule(_Model):
    name: str = ""
    match: RecordMatch = RecordMatch()
    not_: RecordMatch | None = Field(default=None, alias="not")
    action: RecordAction

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FileFaultAction(_Model):
    late: str | None = Field(default=None, description="extra delay before the return file")
    never: bool = False
    twice: bool = False
    truncated: bool = False
    missing_records: int = Field(default=0, ge=0)
    unexpected_name: bool = False


class FileFaultMatch(_Model):
    kind: Literal["DF", "DK"] | None = None
    batch_no: str | None = None

    _regexes = field_validator("batch_no")(classmethod(lambda cls, v: _check_regex(v)))


class FileFaultRule(_Model):
    name: str = ""
    match: FileFaultMatch = FileFaultMatch()
    action: FileFaultAction


class FileFaultRates(_Model):
    late: float = Field(default=0.0, ge=0.0, le=1.0)
    late_by: str = "2h"
    never: float = Field(default=0.0, ge=0.0, le=1.0)
    twice: float = Field(default=0.0, ge=0.0, le=1.0)
    truncated: float = Field(default=0.0, ge=0.0, le=1.0)
    missing_records: float = Field(default=0.0, ge=0.0, le=1.0)
    unexpected_name: float = Field(default=0.0, ge=0.0, le=1.0)


class BatchSettings(_Model):
    # Delays on the virtual clock: from intake to processing, and from processing to the
    # return file (this bank answers within the platform's 20-minute polling rhythm).
    processing_delay: str = "10m"
    return_delay: str = "15m"
    max_file_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    # Record outcomes: these rules first (first match wins; a rule with a probability is a
    # scoped rate), then seeded rates per code for every record, then the ledger (balance,
    # status, limits) decides.
    rules: list[RecordRule] = []
    rates: dict[str, float] = {}
    # Batch files dated the day before the bank's business date are refused (4009) unless
    # this is true (a file prepared just before the cutover).
    accept_previous_business_day: bool = False
    # Return-file faults: rules first, then seeded rates.
    file_faults: list[FileFaultRule] = []
    file_fault_rates: FileFaultRates = FileFaultRates()

    @field_validator("rates")
    @classmethod
    def _rate_codes(cls, value: dict[str, float]) -> dict[str, float]:
        for code, rate in value.items():
            if code not in CODES or not code.startswith("3"):
                raise ValueError(f"rates: {code!r} is not a record code (3xxx) of the code table")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"rates: {code} rate must be between 0 and 1")
        if sum(value.values()) > 1.0:
            raise ValueError("rates: the rates add up to more than 1")
        return value

    @field_validator("processing_delay", "return_delay")
    @classmethod
    def _duration(cls, value: str) -> str:
        from simulator.clock import parse_duration

        parse_duration(value)
        return value


def _check_duration(value: str) -> str:
    from simulator.clock import parse_duration

    parse_duration(value)
    return value


def _check_rate(value: Any) -> Decimal:
    if isinstance(value, float):
        raise ValueError("a fee rate must be a decimal string like \"0.0060\", not a number")
    try:
        rate = Decimal(str(value))
    except ArithmeticError:
        raise ValueError(f"not a decimal fee rate: {value!r}") from None
    if not rate.is_finite() or not Decimal(0) <= rate < Decimal(1):
        raise ValueError(f"a fee rate must be at least 0 and below 1, got {value!r}")
    return rate


# Fee rates are Decimal inside and strings in the profile ("0.0060"): never a float.
FeeRate = Annotated[Decimal, BeforeValidator(_check_rate), PlainSerializer(str, when_used="json")]


class WechatMerchant(_Model):
    """A WeChat Pay merchant (商户号) whose T+1 settlement goes to a platform's 98 account."""

    mchid: str = Field(pattern=r"^[0-9]{6,32}$")
    appid: str = Field(pattern=r"^[A-Za-z0-9_]{1,32}$")
    app_id: str = Field(description="the bank platform whose supervision account is credited")
    api_key: str | None = Field(default=None, description=(
        "the retired HMAC key of the APIv2 era: no longer used (requests are RSA-signed); "
        "accepted so that older profiles still load"))
    api_v3_key: str = Field(description="exactly 32 bytes: the AES-256-GCM key of resources")
    fee_rate: FeeRate = Decimal("0.0060")
    merchant_serial: str = Field(default=DEV_MERCHANT_SERIAL, pattern=r"^[0-9A-Fa-f]{1,40}$",
                                 description="serial of the merchant API certificate (serial_no)")
    merchant_public_key: str | None = Field(default=None, description=(
        "the merchant's RSA public key or API certificate: PEM text or a file path; None: the "
        "published development key (contracts/wechat_dev_keys/apiclient_key.pem)"))
    answer_key: Literal["certificate", "public_key"] = Field(default="certificate", description=(
        "which platform key signs answers and notifications when the request does not choose "
        "by its Wechatpay-Serial header: the platform certificate or the WeChat Pay public key"))

    @field_validator("api_v3_key")
    @classmethod
    def _aes_key(cls, value: str) -> str:
        if len(value.encode("utf-8")) != 32:
            raise ValueError("api_v3_key must be exactly 32 bytes (AES-256)")
        return value


class NotifyMatch(_Model):
    """What a notification fault rule looks at; the regex must match the whole value."""

    out_trade_no: str | None = None
    amount_min: Fen | None = None
    amount_max: Fen | None = None

    _regexes = field_validator("out_trade_no")(classmethod(lambda cls, v: _check_regex(v)))


class NotifyAction(_Model):
    drop: bool = False
    duplicate: bool = False
    delay: str | None = None
    ignore_answer: bool = False

    @field_validator("delay")
    @classmethod
    def _delay(cls, value: str | None) -> str | None:
        return None if value is None else _check_duration(value)


class NotifyRule(_Model):
    name: str = ""
    match: NotifyMatch = NotifyMatch()
    action: NotifyAction


class NotifyRates(_Model):
    drop: float = Field(default=0.0, ge=0.0, le=1.0)
    duplicate: float = Field(default=0.0, ge=0.0, le=1.0)
    delay: float = Field(default=0.0, ge=0.0, le=1.0)
    delay_by: str = "30m"
    ignore_answer: float = Field(default=0.0, ge=0.0, le=1.0)

    _durations = field_validator("delay_by")(classmethod(lambda cls, v: _check_duration(v)))


class NotifySettings(_Model):
    # WeChat's own retry schedule after a failed or ignored delivery (about 24 h in all).
    retry_schedule: list[str] = ["15s", "15s", "30s", "3m", "10m", "20m", "30m", "30m", "30m",
                                 "60m", "3h", "3h", "3h", "6h", "6h"]
    timeout_ms: int = Field(default=5_000, ge=1, le=600_000)
    rules: list[NotifyRule] = []
    rates: NotifyRates = NotifyRates()

    @field_validator("retry_schedule")
    @classmethod
    def _schedule(cls, value: list[str]) -> list[str]:
        for item in value:
            _check_duration(item)
        return value


class WechatPlatformKeys(_Model):
    """The platform's signing keys (WeChat Pay's side) and the switches that break them."""

    source: Literal["dev", "state_dir"] = Field(default="dev", description=(
        "dev: the keys shipped in the package (deterministic, the same everywhere); "
        "state_dir: RSA keys generated at first start under <state dir>/wechat-keys/"))
    certificate_key: str | None = Field(default=None, description=(
        "private key of the platform certificate (PEM text or path); overrides source"))
    public_key_key: str | None = Field(default=None, description=(
        "private key behind the WeChat Pay public key (PEM text or path); overrides source"))
    public_key_id: str = Field(default=DEV_PUBLIC_KEY_ID, pattern=r"^PUB_KEY_ID_[0-9A-Za-z]{1,64}$")
    answer_signature: Literal["valid", "bad"] = Field(default="valid", description=(
        "bad: every answer and notification carries a signature that does not verify"))
    platform_certificate: Literal["valid", "expired"] = Field(default="valid", description=(
        "expired: the platform certificate served and used is past its expire_time"))


class WechatSettings(_Model):
    """The fake WeChat Pay channel: day boundary, bill and settlement times, merchants."""

    cutover: time = time(0, 0)
    bill_ready_at: time = time(9, 0)
    settle_at: time = time(10, 0)
    merchants: list[WechatMerchant] = []
    notify: NotifySettings = NotifySettings()
    keys: WechatPlatformKeys = WechatPlatformKeys()

    @field_validator("merchants")
    @classmethod
    def _unique(cls, value: list[WechatMerchant]) -> list[WechatMerchant]:
        ids = [m.mchid for m in value]
        if len(set(ids)) != len(ids):
            raise ValueError("mchid values must be unique")
        return value

    def merchant(self, mchid: str) -> WechatMerchant | None:
        return next((m for m in self.merchants if m.mchid == mchid), None)


class Profile(_Model):
    seed: int = 20260105
    bank: BankPolicy = BankPolicy()
    clock: ClockSettings = ClockSettings()
    security: SecuritySettings = SecuritySettings()
    platforms: list[Platform]
    http_faults: HttpFaults = HttpFaults()
    sftp: SftpSettings = SftpSettings()
    images: ImageSettings = ImageSettings()
    batches: BatchSettings = BatchSettings()
    wechat: WechatSettings = WechatSettings()

    @field_validator("platforms")
    @classmethod
    def _unique_platforms(cls, value: list[Platform]) -> list[Platform]:
        if not value:
            raise ValueError("at least one platform is needed")
        ids = [p.app_id for p in value]
        if len(set(ids)) != len(ids):
            raise ValueError("app_id values must be unique")
        numbers = [n for p in value for n in (p.supervision_account, p.settlement_account)]
        if len(set(numbers)) != len(numbers):
            raise ValueError("platform account numbers must be unique")
        users = [p.sftp.username for p in value if p.sftp is not None]
        if len(set(users)) != len(users):
            raise ValueError("SFTP usernames must be unique")
        return value

    @model_validator(mode="after")
    def _wechat_platforms(self) -> Profile:
        known = {p.app_id for p in self.platforms}
        for i, m in enumerate(self.wechat.merchants):
            if m.app_id not in known:
                raise ValueError(f"wechat.merchants.{i}.app_id: no platform {m.app_id!r} "
                                 f"(platforms: {sorted(known)})")
        return self

    def platform(self, app_id: str) -> Platform | None:
        return next((p for p in self.platforms if p.app_id == app_id), None)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (money back in yuan strings) that loads into an equal profile."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return data


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top)"
        lines.append(f"  {where}: {err['msg']}")
    return "invalid profile:\n" + "\n".join(lines)


def profile_from_dict(data: dict[str, Any]) -> Profile:
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(_format_errors(exc)) from None


def default_profile_text() -> str:
    return resources.files("simulator.profiles").joinpath("default.yaml").read_text("utf-8")


def _yaml_mapping(text: str) -> dict[str, Any]:
    try:
        data = yaml_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"profile is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ProfileError("profile must be a YAML mapping")
    return data


def load_profile(path: Path | None) -> Profile:
    """The packaged default, with the file at ``path`` (if any) laid over it.

    The file only needs the keys it changes: it is merged over the packaged default as a
    JSON merge patch (mappings merge key by key, lists and values replace, ``null`` removes),
    so a profile that sets ``bank: {open_active: true}`` keeps the default's magic values.
    """
    data = _yaml_mapping(default_profile_text())
    if path is not None:
        data = merge_patch(data, _yaml_mapping(path.read_text(encoding="utf-8")))
    return profile_from_dict(data)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: the shape ``PATCH /_admin/profile`` accepts."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
