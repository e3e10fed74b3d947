"""The people of a scenario: valid five elements for a name, the same on every run.

Faker (``zh_CN``) draws the area code, mobile and card digits, seeded by the session seed
and the person's name, so 张三 has the same ID number in every scenario, in any order, on
any day. Faker's own ``ssn()`` derives the birth date from today's date (and also draws
Hong Kong, Macau and Taiwan area codes, which are not resident ID numbers); here the birth
date is drawn between fixed dates and the number is built with the GB 11643 check, so
the date is pinned as well as the seed.

Example::

    >>> identity = make_identity("张三", seed=20260105)
    >>> identity["name"], len(identity["id_number"]), identity["bound_card_number"][:2]
    ('张三', 18, '62')
"""

from __future__ import annotations

import re
from datetime import date

from faker import Faker
from faker.providers.ssn.zh_CN import Provider as ZhSsn

from simulator.domain.identity import make_card_number, make_id_number

BORN_FROM = (1966, 1, 1)  # adults on the simulator's start date (2026-01-05)
BORN_TO = (2004, 12, 31)
_MAINLAND = re.compile(r"(1[1-5]|2[1-3]|3[1-7]|4[1-6]|5[0-4]|6[1-5])[0-9]{2}(?!00)[0-9]{2}")
_AREA_CODES = tuple(code for code in ZhSsn.area_codes if _MAINLAND.fullmatch(code))
# The default profile's magic values: a generated person must never hit them by chance.
_BLACKLISTED_MOBILE = re.compile(r"1990000[0-9]{4}")
_UNIONPAY_DEBIT_PREFIXES = ("622202", "622848", "621700", "622588", "623668")


def make_identity(name: str, *, seed: int) -> dict[str, str]:
    """The five elements of an opening request for ``name`` (a valid Chinese name)."""
    fake = Faker("zh_CN")
    fake.seed_instance(f"{seed}/{name}")
    born = fake.date_between_dates(date(*BORN_FROM), date(*BORN_TO))
    id_number = make_id_number(fake.random_element(_AREA_CODES), born, fake.random_int(0, 999))
    mobile = fake.phone_number()
    for _ in range(20):  # bounded: a blacklisted draw is one in a few million
        if re.fullmatch(r"1[3-9][0-9]{9}", mobile) and not _BLACKLISTED_MOBILE.fullmatch(mobile):
            break
        mobile = fake.phone_number()
    card = make_card_number(fake.random_element(_UNIONPAY_DEBIT_PREFIXES), 19,
                            fake.random_int(0, 10**12 - 1))
    return {"name": name, "id_number": id_number, "mobile": mobile,
            "bound_card_number": card, "bound_card_kind": "DEBIT_I"}
