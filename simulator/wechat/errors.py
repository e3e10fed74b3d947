"""The channel's errors: one class per WeChat Pay v3 error code, answered as ``{"code", "message"}``.

    WechatError                 root; ``code`` and ``status`` are the wire code and HTTP status
    ├── SignError               401 SIGN_ERROR: missing or malformed Authorization, unknown mchid,
    │                           wrong serial_no, signature that does not verify (wrong key,
    │                           tampered body or URL), stale timestamp, replayed nonce
    ├── ParamError              400 PARAM_ERROR: a body or parameter the channel cannot accept
    ├── OrderNotExist           404 ORDER_NOT_EXIST
    ├── OrderPaid               400 ORDERPAID: closing (or paying again) a paid order
    ├── OrderClosed             400 ORDER_CLOSED: paying a closed order
    ├── OutTradeNoUsed          403 OUT_TRADE_NO_USED: same out_trade_no, different content
    ├── NoStatementExist        400 NO_STATEMENT_EXIST: no bill for that date (none, or future)
    ├── StatementCreating       400 STATEMENT_CREATING: asked before T+1 ``bill_ready_at``
    ├── ResourceNotExists       404 RESOURCE_NOT_EXISTS: no such route; (refunds) no such order or refund
    ├── InvalidRequest          400 INVALID_REQUEST: (refunds) order not paid, more than refundable,
    │                           amount.total not the order's, out_refund_no reused
    └── FrequencyLimited        429 FREQUENCY_LIMITED: more live request nonces than the channel keeps

Messages are the channel's (Chinese first, like WeChat's), ``detail`` says why this time.
These are not :class:`simulator.errors.BankError`: the bank's code table does not hold them.

Example::

    raise OrderNotExist("no order TOPUP-1 for merchant 1900000109")
"""

from __future__ import annotations

from typing import Any, ClassVar


class WechatError(Exception):
    code: ClassVar[str] = "SYSTEM_ERROR"
    status: ClassVar[int] = 500
    message: ClassVar[str] = "系统错误"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail
        super().__init__(f"{self.code}: {detail or self.message}")

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": f"{self.message}: {self.detail}" if self.detail
                else self.message}


class SignError(WechatError):
    code, status, message = "SIGN_ERROR", 401, "签名错误"


class ParamError(WechatError):
    code, status, message = "PARAM_ERROR", 400, "参数错误"


class OrderNotExist(WechatError):
    code, status, message = "ORDER_NOT_EXIST", 404, "订单不存在"


class OrderPaid(WechatError):
    code, status, message = "ORDERPAID", 400, "订单已支付"


class OrderClosed(WechatError):
    code, status, message = "ORDER_CLOSED", 400, "订单已关闭"


class OutTradeNoUsed(WechatError):
    code, status, message = "OUT_TRADE_NO_USED", 403, "商户订单号重复"


class NoStatementExist(WechatError):
    code, status, message = "NO_STATEMENT_EXIST", 400, "账单不存在"


class StatementCreating(WechatError):
    code, status, message = "STATEMENT_CREATING", 400, "账单生成中"


class ResourceNotExists(WechatError):
    code, status, message = "RESOURCE_NOT_EXISTS", 404, "资源不存在"


class InvalidRequest(WechatError):
    code, status, message = "INVALID_REQUEST", 400, "请求不合规"


class FrequencyLimited(WechatError):
    code, status, message = "FREQUENCY_LIMITED", 429, "频率超限"


def all_wechat_errors() -> list[type[WechatError]]:
    """Every concrete error class (for the test that keeps the contract and the code in step)."""
    return list(WechatError.__subclasses__())
