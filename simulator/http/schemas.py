"""Request and response bodies of the bank API (the shapes the OpenAPI contract pins).

Field formats are loose on purpose where the bank itself validates (ID number, card,
mobile): a malformed ID number must reach the bank and get its own code (2002), not a
generic schema error (1010).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.money import YUAN_PATTERN

SERIAL_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
Serial = Field(pattern=SERIAL_PATTERN, description="the platform's request serial, unique per platform")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenAccountRequest(_Body):
    request_serial: str = Serial
    name: str = Field(min_length=1, max_length=64, description="resident's name as on the ID card")
    id_number: str = Field(min_length=1, max_length=32, description="18-character resident ID number")
    mobile: str = Field(min_length=1, max_length=32, description="mainland mobile number")
    bound_card_number: str = Field(min_length=1, max_length=32, description="UnionPay Class I card")
    bound_card_kind: str = Field(min_length=1, max_length=16, description="DEBIT_I or CREDIT")


class FreezeRequest(_Body):
    request_serial: str = Serial
    reason: str = Field(default="", max_length=256)


class SerialRequest(_Body):
    request_serial: str = Serial


class RefundRequest(_Body):
    request_serial: str = Serial
    account_no: str = Field(min_length=1, max_length=32)
    amount: str = Field(pattern=YUAN_PATTERN, description="yuan with two decimals, e.g. 12.30")
    memo: str = Field(default="", max_length=256)


class Limits(BaseModel):
    business_date: str
    balance_cap: str
    daily_outflow_limit: str
    daily_outflow_used: str
    daily_outflow_remaining: str
    annual_outflow_limit: str
    annual_outflow_used: str
    annual_outflow_remaining: str


class Account(BaseModel):
    account_no: str
    account_class: str
    name: str
    status: Literal["PENDING_IMAGES", "ACTIVE", "CLOSED"]
    frozen: bool
    balance: str
    bound_card_number: str | None
    bound_card_kind: str | None
    opened_at: str
    closed_at: str | None
    image_status: Literal["NONE", "IN_REVIEW", "APPROVED", "REJECTED", "WAIVED"]
    image_reason: str | None
    withholding_agreement: bool


class AccountWithLimits(Account):
    limits: Limits


class Refund(BaseModel):
    request_serial: str
    account_no: str
    amount: str
    bound_card_number: str | None
    status: Literal["PAID"]
    paid_at: str
    business_date: str


class _Envelope(BaseModel):
    code: Literal["0000"]
    message: str
    request_serial: str | None = None


class AccountAnswer(_Envelope):
    data: Account


class AccountWithLimitsAnswer(_Envelope):
    data: AccountWithLimits


class RefundAnswer(_Envelope):
    data: Refund


class ErrorAnswer(BaseModel):
    code: str = Field(pattern=r"^[0-9]{4}$", description="a row of the bank's code table")
    message: str
    detail: str | None = None
    request_serial: str | None = None
