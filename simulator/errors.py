"""The bank's exception tree: one class per wire code of ``contracts/error_codes.yaml``.

    BankError                       root; ``code`` names the row of the code table
    ├── RequestError (1xxx)         signature, replay, malformed input, serial conflicts
    ├── OpeningError (2xxx)         identity elements and the bank's opening policy
    ├── AccountError (3xxx)         account state, limits and money
    └── FileRejected (4xxx)         a whole batch file refused, written as a rejection file

The domain raises these; only the adapters (HTTP now, SFTP and batch files later) turn
them into a status code, an SFTP status or a file-level rejection. Messages live in the
code table, not here; ``detail`` adds the specific reason for this occurrence.
"""

from __future__ import annotations

from typing import Any, ClassVar

from contracts.codes import CODES, Code


class BankError(Exception):
    code: ClassVar[str] = "9000"

    def __init__(self, detail: str | None = None, **context: Any) -> None:
        self.detail = detail
        self.context = context
        super().__init__(f"{self.code} {self.entry.name}: {detail or self.entry.message}")

    @property
    def entry(self) -> Code:
        return CODES[self.code]

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.entry.message}
        if self.detail:
            body["detail"] = self.detail
        return body


class RequestError(BankError):
    code = "1010"


class SignatureMissing(RequestError):
    code = "1001"


class UnknownAppId(RequestError):
    code = "1002"


class SignatureInvalid(RequestError):
    code = "1003"


class TimestampStale(RequestError):
    code = "1004"


class NonceReplayed(RequestError):
    code = "1005"


class MalformedRequest(RequestError):
    code = "1010"


class BodyTooLarge(RequestError):
    code = "1011"


class SerialConflict(RequestError):
    code = "1020"


class SerialNotFound(RequestError):
    code = "1021"


class AdminTokenRequired(RequestError):
    code = "1030"


class HostNotAllowed(RequestError):
    code = "1031"


class CrossOriginRefused(RequestError):
    code = "1032"


class UnsupportedMediaType(RequestError):
    code = "1033"


class NotFound(RequestError):
    code = "1040"


class MethodNotAllowed(RequestError):
    code = "1041"


class OpeningError(BankError):
    code = "2001"


class NameInvalid(OpeningError):
    code = "2001"


class IdNumberFormat(OpeningError):
    code = "2002"


class IdNumberChecksum(OpeningError):
    code = "2003"


class IdNumberBirthDate(OpeningError):
    code = "2004"


class Underage(OpeningError):
    code = "2005"


class MobileInvalid(OpeningError):
    code = "2006"


class CardNumberInvalid(OpeningError):
    code = "2007"


class CardKindInvalid(OpeningError):
    code = "2008"


class TooManyAccounts(OpeningError):
    code = "2010"


class IdentityMismatch(OpeningError):
    code = "2011"


class Blacklisted(OpeningError):
    code = "2012"


class AccountError(BankError):
    code = "3057"


class InsufficientBalance(AccountError):
    code = "3008"


class NoSuchAccount(AccountError):
    code = "3009"


class OverLimit(AccountError):
    code = "3013"


class BalanceCapExceeded(AccountError):
    code = "3014"


class AccountFrozen(AccountError):
    code = "3017"


class AccountClosed(AccountError):
    code = "3018"


class SystemBusy(AccountError):
    code = "3028"


class NameMismatch(AccountError):
    code = "3031"


class NoWithholdingAgreement(AccountError):
    code = "3043"


class Duplicate(AccountError):
    code = "3051"


class BadAccountStatus(AccountError):
    code = "3057"


class BalanceNotZero(AccountError):
    code = "3060"


class ImagesNotApproved(AccountError):
    code = "3061"


class AmountInvalid(AccountError):
    code = "3062"


class NotClassIII(AccountError):
    code = "3063"


class FileRejected(BankError):
    """A whole file refused; ``line`` is the 1-based line at fault when there is one."""

    code = "4002"

    def __init__(self, detail: str | None = None, *, line: int | None = None) -> None:
        super().__init__(detail, line=line)
        self.line = line


class FileEncoding(FileRejected):
    code = "4001"


class FileStructure(FileRejected):
    code = "4002"


class FileCountMismatch(FileRejected):
    code = "4003"


class FileTotalMismatch(FileRejected):
    code = "4004"


class FileDuplicateBatch(FileRejected):
    code = "4005"


class FileDuplicateSerial(FileRejected):
    code = "4006"


class FileBadAmount(FileRejected):
    code = "4007"


class FileUnknownKind(FileRejected):
    code = "4008"


class FileBusinessDate(FileRejected):
    code = "4009"


class FileEmpty(FileRejected):
    code = "4010"


class FileTooLarge(FileRejected):
    code = "4011"


class FileBadAccount(FileRejected):
    code = "4012"


class FileBadField(FileRejected):
    code = "4013"


class InternalError(BankError):
    code = "9000"


def all_error_classes() -> list[type[BankError]]:
    """Every concrete error class, for the test that keeps this tree and the table in step."""
    seen: list[type[BankError]] = []
    stack: list[type[BankError]] = [BankError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return seen


def error_for_code(code: str, detail: str | None = None) -> BankError:
    """An instance of the most specific class for ``code`` (used by rule-driven faults)."""
    if code not in CODES:
        raise KeyError(f"unknown code {code!r}")
    leaves = [c for c in all_error_classes() if c.code == code and not c.__subclasses__()]
    cls = leaves[0] if leaves else BankError
    err = cls(detail)
    if err.code != code:  # pragma: no cover - table rows without a class fall back here
        raise KeyError(f"no error class for code {code!r}")
    return err
