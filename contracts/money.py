"""Money on the wire: yuan strings with exactly two decimals, held as integer fen.

JSON numbers are never used for money (a JSON number is a float to most parsers).

    >>> parse_yuan("12.30")
    1230
    >>> format_fen(1230)
    '12.30'
"""

from __future__ import annotations

import re

YUAN_PATTERN = r"^(0|[1-9][0-9]{0,11})\.[0-9]{2}$"
_YUAN = re.compile(YUAN_PATTERN)


class AmountFormatError(ValueError):
    """The text is not a yuan amount with exactly two decimals."""


def parse_yuan(text: str) -> int:
    """``"12.30"`` -> ``1230`` fen; anything else (floats, signs, 3 decimals) is refused."""
    if not _YUAN.match(text):
        raise AmountFormatError(f"not a yuan amount with two decimals: {text!r}")
    whole, cents = text.split(".")
    return int(whole) * 100 + int(cents)


def format_fen(fen: int) -> str:
    """``1230`` -> ``"12.30"``; negative amounts keep their sign."""
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"
