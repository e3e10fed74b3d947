"""The platform client's exceptions: one root, one class per kind of failure.

``PlatformError`` (root, ``code`` is a short stable name)
  ``ConfigError``        the configuration file or flags are invalid
  ``BankApiError``       the bank answered a non-success code (``.bank_code``, ``.http_status``)
  ``BankUnavailable``    no usable answer: timeout, refused connection, 3028/9000 after retries
  ``SftpUnavailable``    the SFTP server could not be reached or an operation failed
  ``WeChatError``        the channel answered an error (``.wechat_code``) or could not be reached
  ``BillError``          a bill failed its checks (hash, structure, summary)
  ``StepRefused``        a step's preconditions do not hold (e.g. disburse before approve)
  ``InsufficientFunds``  a wallet debit larger than the available cash

Example::

    >>> try:
    ...     raise StepRefused("reconciliation for 2026-01-05 is not approved")
    ... except PlatformError as exc:
    ...     exc.code
    'step_refused'
"""

from __future__ import annotations


class PlatformError(Exception):
    """Root of every error the platform client raises on purpose."""

    code = "platform_error"


class ConfigError(PlatformError):
    code = "config_error"


class BankApiError(PlatformError):
    """The bank answered with a code other than 0000."""

    code = "bank_api_error"

    def __init__(self, bank_code: str, message: str, http_status: int | None = None) -> None:
        super().__init__(f"bank answered {bank_code}: {message}")
        self.bank_code = bank_code
        self.http_status = http_status


class BankUnavailable(PlatformError):
    code = "bank_unavailable"


class SftpUnavailable(PlatformError):
    code = "sftp_unavailable"


class WeChatError(PlatformError):
    """The WeChat channel answered an error, or could not be reached (``wechat_code`` NETWORK)."""

    code = "wechat_error"

    def __init__(self, wechat_code: str, message: str, http_status: int | None = None) -> None:
        super().__init__(f"WeChat answered {wechat_code}: {message}")
        self.wechat_code = wechat_code
        self.http_status = http_status


class BillError(PlatformError):
    code = "bill_error"


class StepRefused(PlatformError):
    code = "step_refused"


class InsufficientFunds(PlatformError):
    code = "insufficient_funds"
