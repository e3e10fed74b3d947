"""The bank API's operations by name, with their method and path template.

Names are what fault rules and the event timeline use (``operation: [open_account]``);
the HTTP adapter maps a request to its operation with :func:`resolve`.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class Operation(NamedTuple):
    name: str
    method: str
    path: str  # template, {param} segments
    mutating: bool


OPERATIONS: tuple[Operation, ...] = (
    Operation("open_account", "POST", "/api/v1/accounts/open", True),
    Operation("query_opening", "GET", "/api/v1/accounts/openings/{request_serial}", False),
    Operation("query_account", "GET", "/api/v1/accounts/{account_no}", False),
    Operation("freeze_account", "POST", "/api/v1/accounts/{account_no}/freeze", True),
    Operation("unfreeze_account", "POST", "/api/v1/accounts/{account_no}/unfreeze", True),
    Operation("close_account", "POST", "/api/v1/accounts/{account_no}/close", True),
    Operation("refund", "POST", "/api/v1/refunds", True),
    Operation("query_refund", "GET", "/api/v1/refunds/{request_serial}", False),
)
OPERATION_NAMES = frozenset(op.name for op in OPERATIONS)

_COMPILED = [
    (op, re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", op.path) + "$"))
    for op in OPERATIONS
]


def resolve(method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
    """The operation a request addresses and its path parameters, or None."""
    for op, pattern in _COMPILED:
        if op.method == method:
            m = pattern.match(path)
            if m:
                return op, m.groupdict()
    return None
