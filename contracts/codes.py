"""The bank's code table (``error_codes.yaml``), loaded once.

Example::

    >>> from contracts.codes import CODES
    >>> CODES["3008"].name
    'INSUFFICIENT_BALANCE'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts import contract_path
from contracts.yamltext import load as yaml_load


@dataclass(frozen=True)
class Code:
    code: str
    name: str
    http: int
    retryable: bool
    message: str
    message_zh: str


def _load() -> dict[str, Code]:
    raw: dict[str, Any] = yaml_load(contract_path("error_codes.yaml").read_text("utf-8"))
    return {
        str(code): Code(code=str(code), **fields) for code, fields in raw["codes"].items()
    }


CODES: dict[str, Code] = _load()
BY_NAME: dict[str, Code] = {c.name: c for c in CODES.values()}

