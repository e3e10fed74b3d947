"""Identity elements of an account opening: name, ID number, mobile, bound card, account number.

Every ``validate_*`` function either returns the (normalised) value or raises the
``simulator.errors`` class whose wire code the API answers with. Details never carry a
whole ID number, so they can go to logs as they are. The ``make_*`` functions build valid
values for fixtures, tests and benchmarks; ``make_account_number`` is also how the bank
numbers its own Class III accounts.

Example::

    >>> from datetime import date
    >>> number = make_id_number("110101", date(1990, 3, 7), 123)
    >>> number
    '110101199003071233'
    >>> info = validate_id_number(number, today=date(2024, 1, 1), min_age=18)
    >>> (info.area_code, info.birth_date.isoformat(), info.sex)
    ('110101', '1990-03-07', 'M')
    >>> mask_id_number(number)
    '110101********1233'
    >>> validate_card_number(make_card_number("622202", 19, 42))
    '6222020000000000422'
    >>> len(make_account_number("623501", 0, seed=7))
    19
"""

from __future__ import annotations

import hashlib
import re
from datetime import date
from functools import lru_cache
from itertools import pairwise
from typing import Any, Literal, NamedTuple

from simulator.errors import (
    CardKindInvalid,
    CardNumberInvalid,
    IdNumberBirthDate,
    IdNumberChecksum,
    IdNumberFormat,
    MobileInvalid,
    NameInvalid,
    Underage,
)

__all__ = [
    "CARD_KINDS",
    "IdInfo",
    "id_check_char",
    "luhn_check_digit",
    "luhn_valid",
    "make_account_number",
    "make_card_number",
    "make_id_number",
    "mask_id_number",
    "normalize_id_number",
    "validate_card_kind",
    "validate_card_number",
    "validate_id_number",
    "validate_mobile",
    "validate_name",
]

# --- names -------------------------------------------------------------------------------

# U+00B7 is what mainland ID cards print between the parts of minority and transliterated
# names; U+30FB (katakana middle dot) is what Chinese IMEs often produce for the same key.
_NAME_DOTS = frozenset("\u00b7\u30fb")
_NAME_MIN, _NAME_MAX = 2, 30


# A well-formed name in one regex (ideographs, single middle dots between them): the
# common case costs one match; only a bad name walks the checks below for its message.
_IDEOGRAPHS = "\u3400-\u4dbf\u4e00-\u9fff"
_NAME_RE = re.compile(f"[{_IDEOGRAPHS}]+(?:[\u00b7\u30fb][{_IDEOGRAPHS}]+)*")


def _is_name_ideograph(ch: str) -> bool:
    cp = ord(ch)
    return 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF


def validate_name(name: str) -> str:
    stripped = name.strip()
    if not _NAME_MIN <= len(stripped) <= _NAME_MAX:
        raise NameInvalid(
            f"name must be {_NAME_MIN} to {_NAME_MAX} characters, got {len(stripped)}"
        )
    if _NAME_RE.fullmatch(stripped):
        return stripped
    for i, ch in enumerate(stripped, start=1):
        if ch not in _NAME_DOTS and not _is_name_ideograph(ch):
            raise NameInvalid(
                f"character {i} (U+{ord(ch):04X}) is not a CJK ideograph or a middle dot"
            )
    if stripped[0] in _NAME_DOTS or stripped[-1] in _NAME_DOTS:
        raise NameInvalid("name cannot start or end with a middle dot")
    if any(a in _NAME_DOTS and b in _NAME_DOTS for a, b in pairwise(stripped)):
        raise NameInvalid("name cannot have two middle dots in a row")
    return stripped


# --- resident ID numbers (GB 11643-1999) -------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_CHARS = "10X98765432"
# ``\d`` and ``$`` would let through non-ASCII digits and a trailing newline.
_ID_RE = re.compile(r"[0-9]{17}[0-9X]")
_DIGITS_RE = re.compile(r"[0-9]+")
# Mainland province-level codes (GB/T 2260). 71/81/82 (Taiwan, Hong Kong, Macau) and the
# 83 used by residence permits are not resident ID numbers this bank may open on.
_PROVINCES = frozenset(
    f"{n:02d}"
    for lo, hi in ((11, 15), (21, 23), (31, 37), (41, 46), (50, 54), (61, 65))
    for n in range(lo, hi + 1)
)
_EARLIEST_BIRTH = date(1900, 1, 1)


class IdInfo(NamedTuple):
    """What an ID number says: area, birth date and sex."""

    area_code: str
    birth_date: date
    sex: Literal["M", "F"]




def id_check_char(first17: str) -> str:
    if len(first17) != 17 or not _DIGITS_RE.fullmatch(first17):
        raise ValueError("expected exactly 17 ASCII digits")
    return _id_check(first17)


def _id_check(first17: str) -> str:
    # Callers have checked: 17 ASCII digits. The weights are 2**(17-i) mod 11 and
    # 13 = 2 (mod 11), so sum(a_i * w_i) = 2 * (the digits read in base 13) (mod 11): one
    # int() in C instead of 17 multiplications in Python, on every account opening.
    return _ID_CHECK_CHARS[2 * int(first17, 13) % 11]


def normalize_id_number(id_number: str) -> str:
    """The form to store and compare: a lowercase check ``x`` is the same person as ``X``."""
    return id_number.upper()


def mask_id_number(id_number: str) -> str:
    number = normalize_id_number(id_number)
    if len(number) != 18:
        # Without the standard layout there is no telling which digits are the birth date.
        return "*" * len(number)
    return number[:6] + "********" + number[-4:]


def _age_on(birth: date, today: date) -> int:
    # The birthday itself counts. Tuple order puts (2, 29) after (2, 28), so in common
    # years a 29 February birthday is reached on 1 March, never on 28 February.
    before_birthday = (today.month, today.day) < (birth.month, birth.day)
    return today.year - birth.year - int(before_birthday)


def validate_id_number(id_number: str, *, today: date, min_age: int) -> IdInfo:
    if len(id_number) != 18:
        raise IdNumberFormat(f"ID number must be 18 characters, got {len(id_number)}")
    number = normalize_id_number(id_number)
    if not _ID_RE.fullmatch(number):
        raise IdNumberFormat("ID number must be 17 digits followed by a digit or X")
    expected = _id_check(number[:17])
    if number[17] != expected:
        raise IdNumberChecksum(f"check character of {mask_id_number(number)} is {number[17]}, "
                               f"the first 17 digits give {expected}")
    if number[:2] not in _PROVINCES:
        raise IdNumberBirthDate(
            f"{mask_id_number(number)}: {number[:2]} is not a mainland province-level area code"
        )
    try:
        birth = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise IdNumberBirthDate(
            f"{mask_id_number(number)}: birth date digits are not a calendar date") from None
    if birth < _EARLIEST_BIRTH:
        raise IdNumberBirthDate(
            f"{mask_id_number(number)}: birth date is before {_EARLIEST_BIRTH.isoformat()}")
    if birth > today:
        raise IdNumberBirthDate(f"{mask_id_number(number)}: birth date is after {today.isoformat()}")
    age = _age_on(birth, today)
    if age < min_age:
        raise Underage(f"{mask_id_number(number)}: applicant is {age}, "
                       f"the minimum age is {min_age}")
    sex: Literal["M", "F"] = "M" if int(number[14:17]) % 2 else "F"
    return IdInfo(area_code=number[:6], birth_date=birth, sex=sex)


def make_id_number(area_code: str, birth_date: date, sequence: int) -> str:
    if len(area_code) != 6 or not _DIGITS_RE.fullmatch(area_code):
        raise ValueError("area code must be 6 ASCII digits")
    if not 0 <= sequence <= 999:
        raise ValueError("sequence must be 0 to 999")
    if birth_date.year < 1000:
        raise ValueError("birth year must have four digits")
    # Format by hand: strftime("%Y") does not zero-pad on every platform.
    birth = f"{birth_date.year:04d}{birth_date.month:02d}{birth_date.day:02d}"
    first17 = f"{area_code}{birth}{sequence:03d}"
    return first17 + id_check_char(first17)


# --- cards, mobiles ----------------------------------------------------------------------

CARD_KINDS = ("DEBIT_I", "CREDIT")
_CARD_MIN, _CARD_MAX = 16, 19
_MOBILE_RE = re.compile(r"1[3-9][0-9]{9}")


# ASCII digit -> the digit sum of twice the digit, as a bytes.translate table.
_LUHN_DOUBLED = bytes.maketrans(b"0123456789", bytes(2 * d - 9 if d > 4 else 2 * d
                                                     for d in range(10)))


def luhn_check_digit(payload: str) -> str:
    if not _DIGITS_RE.fullmatch(payload):
        raise ValueError("Luhn payload must be ASCII digits")
    return _luhn(payload)


def _luhn(payload: str) -> str:
    # Callers have checked: ASCII digits. The digit next to the (future) check digit is
    # the first one doubled. Byte sums instead of a loop: this runs twice per opening.
    digits = payload.encode("ascii")[::-1]
    doubled, kept = digits[0::2], digits[1::2]
    total = sum(doubled.translate(_LUHN_DOUBLED)) + sum(kept) - 48 * len(kept)
    return "0123456789"[-total % 10]


def luhn_valid(number: str) -> bool:
    if len(number) < 2 or not _DIGITS_RE.fullmatch(number):
        return False
    return _luhn(number[:-1]) == number[-1]


def validate_card_number(number: str) -> str:
    if not _DIGITS_RE.fullmatch(number):
        raise CardNumberInvalid("card number must be ASCII digits only")
    if not _CARD_MIN <= len(number) <= _CARD_MAX:
        raise CardNumberInvalid(
            f"card number must be {_CARD_MIN} to {_CARD_MAX} digits, got {len(number)}"
        )
    if not number.startswith("62"):
        raise CardNumberInvalid("card number does not start with the UnionPay prefix 62")
    if _luhn(number[:-1]) != number[-1]:
        raise CardNumberInvalid("card number fails the Luhn check")
    return number


def validate_card_kind(kind: str) -> str:
    if kind not in CARD_KINDS:
        raise CardKindInvalid(f"card kind must be one of {', '.join(CARD_KINDS)}")
    return kind


def validate_mobile(mobile: str) -> str:
    if not _MOBILE_RE.fullmatch(mobile):
        raise MobileInvalid("mobile must be 11 digits starting with 13 to 19")
    return mobile


def make_card_number(prefix: str, length: int, sequence: int) -> str:
    if not _DIGITS_RE.fullmatch(prefix):
        raise ValueError("prefix must be ASCII digits")
    body_len = length - len(prefix) - 1
    if body_len < 1:
        raise ValueError("length leaves no room for a sequence and a check digit")
    if not 0 <= sequence < 10**body_len:
        raise ValueError(f"sequence must be 0 to {10**body_len - 1} for this prefix and length")
    payload = f"{prefix}{sequence:0{body_len}d}"
    return payload + _luhn(payload)


# --- the bank's own account numbers ------------------------------------------------------

_BODY_DIGITS = 12
# Annotated because int ** int is typed Any (a negative exponent would give a float).
_HALF: int = 10 ** (_BODY_DIGITS // 2)
_FEISTEL_ROUNDS = 4


@lru_cache(maxsize=64)
def _round_keys(seed: int) -> tuple[bytes, ...]:
    # hashlib, not hash(): hash() is salted per process and numbers must survive restarts.
    return tuple(
        hashlib.sha256(f"banksim/account-number/{seed}/{r}".encode()).digest()
        for r in range(_FEISTEL_ROUNDS)
    )


@lru_cache(maxsize=64)
def _round_hashers(seed: int) -> tuple[Any, ...]:
    # Keyed BLAKE2b states with the key already absorbed: copying one is cheaper than
    # keying a new one for every round of every account number.
    return tuple(hashlib.blake2b(key=key, digest_size=8) for key in _round_keys(seed))


def _scramble(sequence: int, seed: int) -> int:
    # A Feistel network over two 6-digit halves: each round is invertible whatever the
    # round function, so the whole map is a bijection on 0..10**12-1 (no two sequences
    # collide), while neighbouring sequences land far apart, unlike a bare affine map.
    # Round function: BLAKE2b-64 keyed by the round's key over the right half's 4 bytes.
    left, right = divmod(sequence, _HALF)
    for keyed in _round_hashers(seed):
        state = keyed.copy()
        state.update(right.to_bytes(4, "big"))
        left, right = right, (left + int.from_bytes(state.digest(), "big")) % _HALF
    return left * _HALF + right


def make_account_number(bin_prefix: str, sequence: int, seed: int) -> str:
    if len(bin_prefix) != 6 or not _DIGITS_RE.fullmatch(bin_prefix):
        raise ValueError("bin_prefix must be 6 ASCII digits")
    if not 0 <= sequence < 10**_BODY_DIGITS:
        raise ValueError(f"sequence must be 0 to {10**_BODY_DIGITS - 1}")
    payload = f"{bin_prefix}{_scramble(sequence, seed):0{_BODY_DIGITS}d}"
    return payload + _luhn(payload)
