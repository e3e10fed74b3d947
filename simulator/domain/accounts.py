"""Class III accounts: opening from the five elements, status changes, queries.

Opening checks run in the order a bank's front end would: each identity element's form
(name, ID number with its checksum, birth date and age, mobile, bound card), then the
bank's policy (identity rules from the profile, the per-ID account limit). The first
failure raises its coded error; nothing is written for a rejected opening except the
stored answer (see :mod:`simulator.domain.idempotency`).

Status model: ``status`` is PENDING_IMAGES -> ACTIVE -> CLOSED; freezing is separate, so
unfreezing returns an account to exactly the status it had. A freeze has a source: the
platform's (risk control) or the bank's own (e.g. a judicial freeze); each side lifts only
its own, so a platform can never unfreeze what the bank froze.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any, NamedTuple

from contracts.money import format_fen
from simulator.clock import from_us
from simulator.config import BankPolicy, IdentityMatch, IdentityRule
from simulator.domain import identity
from simulator.domain.ledger import Ledger, OutflowLimits
from simulator.errors import (
    AccountClosed,
    BadAccountStatus,
    BalanceNotZero,
    NoSuchAccount,
    NotClassIII,
    TooManyAccounts,
    error_for_code,
)
from simulator.events import record_event
from simulator.store import Store

_SEQUENCE_KEY = "accounts.class_iii_sequence"
# Bits of accounts.frozen: who froze the account.
FROZEN_BY_PLATFORM = 1
FROZEN_BY_BANK = 2


class OpeningRequest(NamedTuple):
    """The five elements of an opening (a tuple: built twice per opening, and cheap)."""

    name: str
    id_number: str
    mobile: str
    bound_card_number: str
    bound_card_kind: str


_MATCH_FIELDS = ("id_number", "name", "mobile", "bound_card_number")
# (field, compiled whole-value regex) pairs that must all match.
_Compiled = tuple[tuple[str, re.Pattern[str]], ...]


def _compile(match: IdentityMatch) -> _Compiled:
    return tuple((field, re.compile(pattern)) for field in _MATCH_FIELDS
                 if (pattern := getattr(match, field)) is not None)


def _matches_compiled(match: _Compiled, request: OpeningRequest) -> bool:
    return all(pattern.fullmatch(getattr(request, field)) for field, pattern in match)


@dataclass(frozen=True)
class _CompiledRule:
    match: _Compiled
    not_: _Compiled | None
    reject: str
    name: str | None


def _compile_rules(rules: list[IdentityRule]) -> tuple[_CompiledRule, ...]:
    return tuple(_CompiledRule(_compile(rule.match),
                               None if rule.not_ is None else _compile(rule.not_),
                               rule.reject, rule.name or None) for rule in rules)


# The new account's row, one statement; ``balance_fen`` and ``frozen`` start at 0.
_INSERT_CLASS_III = (
    "INSERT INTO accounts(account_no, kind, name, opened_us, app_id, allow_negative, "
    "balance_cap_fen, status, id_number, mobile, bound_card_number, bound_card_kind, "
    "opening_serial, image_status) VALUES (?, 'CLASS_III', ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?)")


def mask_card(number: str | None) -> str | None:
    return None if number is None else f"{number[:6]}{'*' * (len(number) - 10)}{number[-4:]}"


class Accounts:
    def __init__(self, store: Store, ledger: Ledger) -> None:
        self.store = store
        self.ledger = ledger
        # The profile's identity rules compiled once per rule list (a profile change
        # brings a new list), and the last opening time's ISO form (constant while the
        # clock stands still, as it does in manual mode).
        self._rules: tuple[list[IdentityRule], tuple[_CompiledRule, ...]] | None = None
        self._opened_at: tuple[int, str] = (-1, "")
        # (store.rollbacks when written, the next sequence number as written).
        self._sequence: tuple[int, int] | None = None

    def _identity_rules(self, policy: BankPolicy) -> tuple[_CompiledRule, ...]:
        cached = self._rules
        if cached is None or cached[0] is not policy.identity_rules:
            cached = self._rules = (policy.identity_rules, _compile_rules(policy.identity_rules))
        return cached[1]

    def validate(self, request: OpeningRequest, policy: BankPolicy, today: date) -> OpeningRequest:
        """The request with normalised fields, or the first coded validation error."""
        name = identity.validate_name(request.name)
        id_number = request.id_number.strip().upper()
        identity.validate_id_number(id_number, today=today, min_age=policy.min_age)
        mobile = identity.validate_mobile(request.mobile.strip())
        card = identity.validate_card_number(request.bound_card_number.strip())
        kind = identity.validate_card_kind(request.bound_card_kind)
        clean = OpeningRequest(name, id_number, mobile, card, kind)
        for rule in self._identity_rules(policy):
            if _matches_compiled(rule.match, clean) and not (
                    rule.not_ is not None and _matches_compiled(rule.not_, clean)):
                raise error_for_code(rule.reject, rule.name)
        return clean

    def open(self, *, app_id: str, serial: str, request: OpeningRequest, policy: BankPolicy,
             seed: int, now_us: int, today: date) -> dict[str, Any]:
        """Open a Class III account; returns its API view. Four statements: the per-ID
        count, the sequence, the account row and its timeline event."""
        clean = self.validate(request, policy, today)
        held = self.store.conn.execute(
            "SELECT COUNT(*) FROM accounts WHERE id_number = ? AND status <> 'CLOSED'",
            (clean.id_number,)).fetchone()[0]
        if held >= policy.max_accounts_per_id:
            raise TooManyAccounts(
                f"{identity.mask_id_number(clean.id_number)} holds {held} accounts, "
                f"the bank allows {policy.max_accounts_per_id}")
        account_no = identity.make_account_number(policy.bin, self._next_sequence(), seed)
        status, image_status = (("ACTIVE", "WAIVED") if policy.open_active
                                else ("PENDING_IMAGES", "NONE"))
        self.store.conn.execute(_INSERT_CLASS_III, (
            account_no, clean.name, now_us, app_id, policy.class_iii.balance_cap, status,
            clean.id_number, clean.mobile, clean.bound_card_number, clean.bound_card_kind,
            serial, image_status))
        record_event(self.store, now_us, "account.opened", app_id=app_id, ref=account_no,
                     detail={"serial": serial, "status": status})
        # The view of the row just written (what view() would make of it), without
        # reading it back.
        return {
            "account_no": account_no, "account_class": "III", "name": clean.name,
            "status": status, "frozen": False, "balance": "0.00",
            "bound_card_number": mask_card(clean.bound_card_number),
            "bound_card_kind": clean.bound_card_kind, "opened_at": self._iso(now_us),
            "closed_at": None, "image_status": image_status, "image_reason": None,
            "withholding_agreement": True,  # the column's default: opened with an agreement
        }

    def _next_sequence(self) -> int:
        """Take the next Class III sequence number (0, 1, ...)."""
        # kv holds the next number to use; it is read once and then only written, while
        # no rollback (which could have undone a write) has happened since.
        store = self.store
        cached = self._sequence
        if cached is not None and cached[0] == store.rollbacks:
            sequence = cached[1]
            store.conn.execute("UPDATE kv SET value = ? WHERE key = ?",
                               (str(sequence + 1), _SEQUENCE_KEY))
        else:
            sequence = int(store.get_kv(_SEQUENCE_KEY) or 0)
            store.set_kv(_SEQUENCE_KEY, str(sequence + 1))
        self._sequence = (store.rollbacks, sequence + 1)
        return sequence

    def _iso(self, us: int) -> str:
        last_us, text = self._opened_at
        if us != last_us:
            text = from_us(us).isoformat()
            self._opened_at = (us, text)
        return text

    def row(self, account_no: str, app_id: str | None = None) -> dict[str, Any]:
        """The account, visible only to its own platform when ``app_id`` is given."""
        row = self.store.one("SELECT * FROM accounts WHERE account_no = ?", (account_no,))
        if row is None or (app_id is not None and row["app_id"] != app_id):
            raise NoSuchAccount(f"no account {account_no}")
        return dict(row)

    def class_iii_row(self, account_no: str, app_id: str | None) -> dict[str, Any]:
        """:meth:`row` for an operation of the Class III API (freeze, close, refund).

        A platform acts through that API on its users' Class III accounts only: its own 98
        and settlement accounts answer 3063 (the control API, ``app_id`` None, may still
        freeze them, as the bank itself would).
        """
        row = self.row(account_no, app_id)
        if app_id is not None and row["kind"] != "CLASS_III":
            raise NotClassIII(f"account {account_no} is the platform's {row['kind'].lower()} "
                              "account, not a Class III account")
        return row

    def get(self, account_no: str, app_id: str | None = None) -> dict[str, Any]:
        return self.view(self.row(account_no, app_id))

    @staticmethod
    def view(row: dict[str, Any]) -> dict[str, Any]:
        """The account as the API shows it."""
        return {
            "account_no": row["account_no"],
            "account_class": "III" if row["kind"] == "CLASS_III" else row["kind"],
            "name": row["name"],
            "status": row["status"],
            "frozen": bool(row["frozen"]),
            "balance": format_fen(row["balance_fen"]),
            "bound_card_number": mask_card(row["bound_card_number"]),
            "bound_card_kind": row["bound_card_kind"],
            "opened_at": from_us(row["opened_us"]).isoformat(),
            "closed_at": from_us(row["closed_us"]).isoformat() if row["closed_us"] else None,
            "image_status": row["image_status"],
            "image_reason": row["image_reason"],
            "withholding_agreement": bool(row["withholding_agreement"]),
        }

    def limits(self, account_no: str, policy: BankPolicy, business_date: date) -> dict[str, Any]:
        day_used, year_used = self.ledger.outflow_used(account_no, business_date)
        limits = self.outflow_limits(policy)
        return {
            "business_date": business_date.isoformat(),
            "balance_cap": format_fen(policy.class_iii.balance_cap),
            "daily_outflow_limit": format_fen(limits.daily_fen),
            "daily_outflow_used": format_fen(day_used),
            "daily_outflow_remaining": format_fen(max(0, limits.daily_fen - day_used)),
            "annual_outflow_limit": format_fen(limits.annual_fen),
            "annual_outflow_used": format_fen(year_used),
            "annual_outflow_remaining": format_fen(max(0, limits.annual_fen - year_used)),
        }

    @staticmethod
    def outflow_limits(policy: BankPolicy) -> OutflowLimits:
        return OutflowLimits(policy.class_iii.daily_outflow, policy.class_iii.annual_outflow)

    def set_frozen(self, account_no: str, frozen: bool, *, app_id: str | None, now_us: int,
                   reason: str = "") -> dict[str, Any]:
        row = self.class_iii_row(account_no, app_id)
        if row["status"] == "CLOSED":
            raise AccountClosed(f"account {account_no} is closed")
        bit = FROZEN_BY_PLATFORM if app_id is not None else FROZEN_BY_BANK
        mask = row["frozen"] | bit if frozen else row["frozen"] & ~bit
        self.store.execute("UPDATE accounts SET frozen = ? WHERE account_no = ?", (mask, account_no))
        record_event(self.store, now_us, "account.frozen" if frozen else "account.unfrozen",
                     app_id=row["app_id"], ref=account_no,
                     detail={"reason": reason, "by": "platform" if app_id else "bank",
                             "still_frozen": bool(mask)})
        return self.get(account_no)

    def activate(self, account_no: str, *, now_us: int, reason: str) -> dict[str, Any]:
        """PENDING_IMAGES -> ACTIVE: the bank has approved the account's ID-card images."""
        row = self.row(account_no)
        if row["status"] != "PENDING_IMAGES":
            raise BadAccountStatus(f"account {account_no} is {row['status']}, not PENDING_IMAGES")
        self.store.execute("UPDATE accounts SET status = 'ACTIVE', image_status = 'APPROVED', "
                           "image_reason = NULL WHERE account_no = ?", (account_no,))
        record_event(self.store, now_us, "account.activated", app_id=row["app_id"], ref=account_no,
                     detail={"reason": reason})
        return self.get(account_no)

    def close(self, account_no: str, *, app_id: str, now_us: int) -> dict[str, Any]:
        row = self.class_iii_row(account_no, app_id)
        if row["status"] == "CLOSED":
            raise AccountClosed(f"account {account_no} is already closed")
        if row["balance_fen"] != 0:
            raise BalanceNotZero(f"balance is {row['balance_fen']} fen")
        self.store.execute(
            "UPDATE accounts SET status = 'CLOSED', closed_us = ? WHERE account_no = ?",
            (now_us, account_no))
        record_event(self.store, now_us, "account.closed", app_id=app_id, ref=account_no)
        return self.get(account_no)

    def list(self, *, kind: str | None = None, app_id: str | None = None,
             limit: int = 500) -> list[dict[str, Any]]:
        sql = "SELECT account_no FROM accounts WHERE 1 = 1"
        params: list[Any] = []
        if kind:
            sql += " AND kind = ?"
            params.append(kind)
        if app_id:
            sql += " AND app_id = ?"
            params.append(app_id)
        sql += " ORDER BY opened_us, account_no LIMIT ?"
        params.append(limit)
        return [self.get(r["account_no"]) for r in self.store.all(sql, params)]

