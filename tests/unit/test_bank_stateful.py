"""Stateful property test of the in-process Bank against a small model.

Hypothesis drives random sequences of openings (valid and deliberately invalid), admin
deposits, refunds, freezes (platform and bank), closes, clock advances and replays of
earlier request serials (same payload: the stored answer, nothing changes; different
payload: 1020). After every step the ledger invariants hold and the bank agrees with
the model: balances, Class III cap, daily outflow, and one account per successful
opening serial.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from contracts.money import format_fen
from simulator.bank import Bank
from simulator.clock import CST
from simulator.config import load_profile, profile_from_dict
from simulator.domain.idempotency import Answer
from simulator.domain.identity import make_card_number, make_id_number
from simulator.errors import BankError

APP = "demo-platform"
START = datetime(2026, 1, 5, 9, 0, tzinfo=CST)
CAP_FEN = 200_000
DAILY_FEN = 200_000
ANNUAL_FEN = 5_000_000
MAX_PER_ID = 5
PEOPLE = 6

_VALID_ID = make_id_number("310101", date(1990, 1, 1), 999)

# flaw -> (field, value, expected code); one flaw per opening.
FLAWS: dict[str, tuple[str, str, str]] = {
    "name": ("name", "Zhang San", "2001"),
    "id_format": ("id_number", "31010119900101123", "2002"),
    "id_checksum": ("id_number", _VALID_ID[:17] + ("0" if _VALID_ID[17] != "0" else "1"), "2003"),
    "id_future": ("id_number", make_id_number("310101", date(2030, 1, 1), 1), "2004"),
    "id_area": ("id_number", make_id_number("710101", date(1990, 1, 1), 1), "2004"),
    "underage": ("id_number", make_id_number("310101", date(2010, 1, 1), 1), "2005"),
    "mobile": ("mobile", "12345678901", "2006"),
    "card": ("bound_card_number", "4111111111111111", "2007"),
    "card_kind": ("bound_card_kind", "SAVINGS", "2008"),
    "mismatch": ("bound_card_number", make_card_number("62999", 19, 1), "2011"),
    "blacklisted": ("mobile", "19900001234", "2012"),
}


def person(n: int) -> dict[str, str]:
    return {
        "name": "张三" if n % 2 else "欧阳·娜娜",
        "id_number": make_id_number("310101", date(1990, 1, 1), n),
        "mobile": f"1380000{n:04d}",
        "bound_card_number": make_card_number("622202", 19, n),
        "bound_card_kind": "DEBIT_I" if n % 2 else "CREDIT",
    }


def code_of(call: Any) -> tuple[str, Answer | None]:
    """Run ``call``; the answer's code, or the code of the BankError it raised."""
    try:
        answer: Answer = call()
    except BankError as err:
        return err.code, None
    return str(answer.body["code"]), answer


@dataclass
class ModelAccount:
    id_number: str
    balance: int = 0
    frozen_by_platform: bool = False
    frozen_by_bank: bool = False
    closed: bool = False

    @property
    def frozen(self) -> bool:
        """Frozen while either side's freeze stands: each side lifts only its own."""
        return self.frozen_by_platform or self.frozen_by_bank


@dataclass(frozen=True)
class Sent:
    """A serial-carrying request and the answer it got."""

    op: str  # open | refund | freeze | unfreeze | close
    account_no: str | None
    payload: dict[str, Any]
    status: int
    body: dict[str, Any] = field(hash=False)


class BankMachine(RuleBasedStateMachine):
    accounts = Bundle("accounts")

    def __init__(self) -> None:
        super().__init__()
        data = load_profile(None).as_dict()
        data["bank"]["open_active"] = True
        self.bank = Bank(profile_from_dict(data), None)
        self.model: dict[str, ModelAccount] = {}
        self.now = START
        self.outflow: dict[tuple[str, str], int] = {}
        self.sent: list[Sent] = []
        self.opened_serials: set[str] = set()
        self.paid_refunds: dict[str, dict[str, Any]] = {}
        self.counter = 0

    def teardown(self) -> None:
        self.bank.close()

    # -- helpers ------------------------------------------------------------------------

    def serial(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    def send(self, op: str, account_no: str | None, payload: dict[str, Any]) -> Answer:
        if op == "open":
            return self.bank.open_account(APP, payload)
        if op == "refund":
            return self.bank.refund(APP, payload)
        assert account_no is not None
        if op in ("freeze", "unfreeze"):
            return self.bank.set_frozen(APP, account_no, payload, op == "freeze")
        assert op == "close"
        return self.bank.close_account(APP, account_no, payload)

    def record(self, op: str, account_no: str | None, payload: dict[str, Any],
               answer: Answer) -> None:
        assert not answer.replayed, "a new serial must not be answered as a replay"
        assert answer.body["request_serial"] == payload["request_serial"]
        self.sent.append(Sent(op, account_no, payload, answer.status, answer.body))

    def state(self) -> tuple[Any, ...]:
        store = self.bank.store
        return (
            [tuple(r) for r in store.all("SELECT * FROM accounts ORDER BY account_no")],
            [tuple(r) for r in store.all("SELECT * FROM outflows ORDER BY account_no, period")],
            store.scalar("SELECT COUNT(*) FROM postings"),
            store.scalar("SELECT COUNT(*) FROM idempotency"),
            store.scalar("SELECT COUNT(*) FROM refunds"),
        )

    def used(self, account_no: str) -> tuple[int, int]:
        day = self.now.date()
        return (self.outflow.get((account_no, f"D:{day.isoformat()}"), 0),
                self.outflow.get((account_no, f"Y:{day.year}"), 0))

    # -- rules --------------------------------------------------------------------------

    @initialize(target=accounts, fen=st.integers(1, CAP_FEN))
    def funded_account(self, fen: int) -> Any:
        """Start every run with one ACTIVE account holding money, so refunds get going."""
        no = self.open_account(PEOPLE, None)
        self.deposit(no, fen, fill=False)
        return no

    @rule(target=accounts, who=st.integers(0, PEOPLE - 1),
          flaw=st.none() | st.sampled_from(sorted(FLAWS)))
    def open_account(self, who: int, flaw: str | None) -> Any:
        identity = person(who)
        if flaw is None:
            held = sum(1 for a in self.model.values()
                       if a.id_number == identity["id_number"] and not a.closed)
            expected = "2010" if held >= MAX_PER_ID else "0000"
        else:
            name, value, expected = FLAWS[flaw]
            identity[name] = value
        payload = {"request_serial": self.serial("OPEN"), **identity}
        answer = self.bank.open_account(APP, payload)
        event(f"open {expected}")
        assert answer.body["code"] == expected, answer.body
        self.record("open", None, payload, answer)
        if expected != "0000":
            assert answer.status in (422,)
            return multiple()
        data = answer.body["data"]
        assert answer.status == 200
        assert (data["status"], data["balance"], data["frozen"]) == ("ACTIVE", "0.00", False)
        no = str(data["account_no"])
        assert no not in self.model
        self.model[no] = ModelAccount(identity["id_number"])
        self.opened_serials.add(payload["request_serial"])
        return no

    @rule(account=accounts, fen=st.integers(1, 2_500) | st.integers(1, 250_000), fill=st.booleans())
    def deposit(self, account: str, fen: int, fill: bool) -> None:
        """Deposit ``fen``, or (``fill``) exactly up to the cap."""
        acct = self.model[account]
        if acct.closed:
            return  # what a deposit into a closed account should do is not specified
        if fill:
            if acct.balance >= CAP_FEN:
                return
            fen = CAP_FEN - acct.balance
        try:
            view = self.bank.deposit(account, format_fen(fen))
        except BankError as err:
            assert acct.balance + fen > CAP_FEN, f"unexpected {err}"
            assert err.code == "3014"
            event("deposit 3014")
            return
        assert acct.balance + fen <= CAP_FEN, "deposit above the cap was accepted"
        acct.balance += fen
        event("deposit 0000")
        assert view["balance"] == format_fen(acct.balance)

    @rule(account=accounts, share=st.integers(0, 125))
    def refund_share(self, account: str, share: int) -> None:
        """Refund ``share`` percent of the balance (0 and more than all of it included)."""
        self.refund(account, self.model[account].balance * share // 100)

    @rule(account=accounts,
          fen=st.integers(0, 3_000) | st.integers(1, 300_000) | st.sampled_from([100_000, 200_000]))
    def refund_fixed(self, account: str, fen: int) -> None:
        self.refund(account, fen)

    def refund(self, account: str, fen: int) -> None:
        acct = self.model[account]
        day_used, year_used = self.used(account)
        if fen <= 0:
            expected = "3062"
        elif acct.closed:
            expected = "3018"
        elif acct.frozen:
            expected = "3017"
        elif acct.balance < fen:
            expected = "3008"
        elif day_used + fen > DAILY_FEN or year_used + fen > ANNUAL_FEN:
            expected = "3013"
        else:
            expected = "0000"
        payload = {"request_serial": self.serial("REFUND"), "account_no": account,
                   "amount": format_fen(fen)}
        answer = self.bank.refund(APP, payload)
        event(f"refund {expected}")
        assert answer.body["code"] == expected, (answer.body, acct, day_used, year_used)
        self.record("refund", account, payload, answer)
        if expected != "0000":
            return
        data = answer.body["data"]
        assert (data["amount"], data["account_no"], data["status"]) == (format_fen(fen), account, "PAID")
        assert data["business_date"] == self.now.date().isoformat()
        acct.balance -= fen
        day = self.now.date()
        for key in ((account, f"D:{day.isoformat()}"), (account, f"Y:{day.year}")):
            self.outflow[key] = self.outflow.get(key, 0) + fen
        self.paid_refunds[payload["request_serial"]] = data

    @rule(account=accounts, frozen=st.booleans(), by_platform=st.booleans())
    def set_frozen(self, account: str, frozen: bool, by_platform: bool) -> None:
        acct = self.model[account]
        expected = "3018" if acct.closed else "0000"
        if by_platform:
            op = "freeze" if frozen else "unfreeze"
            payload = {"request_serial": self.serial(op.upper()), "reason": "风控"}
            answer = self.bank.set_frozen(APP, account, payload, frozen)
            assert answer.body["code"] == expected, answer.body
            self.record(op, account, payload, answer)
            view = answer.body.get("data")
        else:
            code, _ = "0000", None
            try:
                view = self.bank.admin_set_frozen(account, frozen, "司法")
            except BankError as err:
                code, view = err.code, None
            assert code == expected
        if expected == "0000":
            if by_platform:
                acct.frozen_by_platform = frozen
            else:
                acct.frozen_by_bank = frozen
            assert view is not None and view["frozen"] is acct.frozen

    @rule(account=accounts)
    def close(self, account: str) -> None:
        acct = self.model[account]
        expected = "3018" if acct.closed else "3060" if acct.balance else "0000"
        payload = {"request_serial": self.serial("CLOSE")}
        answer = self.bank.close_account(APP, account, payload)
        event(f"close {expected}")
        assert answer.body["code"] == expected, answer.body
        self.record("close", account, payload, answer)
        if expected == "0000":
            assert answer.body["data"]["status"] == "CLOSED"
            acct.closed = True

    @rule(seconds=st.integers(1, 3_600) | st.integers(1, 2 * 86_400))
    def advance_clock(self, seconds: int) -> None:
        target = self.now + timedelta(seconds=seconds)
        self.bank.advance_to(target)
        self.now = target
        assert self.bank.clock.now() == target
        assert self.bank.clock.business_date() == target.date()

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data())
    def replay_same(self, data: st.DataObject) -> None:
        sent = data.draw(st.sampled_from(self.sent))
        before = self.state()
        answer = self.send(sent.op, sent.account_no, dict(sent.payload))
        assert answer.replayed
        assert (answer.status, answer.body) == (sent.status, sent.body)
        assert self.state() == before, "a replay changed the bank's state"

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data(), how=st.sampled_from(["payload", "operation"]))
    def replay_different(self, data: st.DataObject, how: str) -> None:
        sent = data.draw(st.sampled_from(self.sent))
        op, account_no, payload = sent.op, sent.account_no, dict(sent.payload)
        if how == "operation":
            op = {"open": "refund", "refund": "open", "freeze": "unfreeze",
                  "unfreeze": "freeze", "close": "freeze"}[op]
            if op == "open":
                payload = {"request_serial": payload["request_serial"], **person(0)}
            elif op == "refund":
                payload = {"request_serial": payload["request_serial"],
                           "account_no": next(iter(self.model), "6231880000000000000"),
                           "amount": "1.00"}
            account_no = account_no or next(iter(self.model), "6231880000000000000")
        elif op == "open":
            payload["mobile"] = "13912345678" if payload["mobile"] != "13912345678" else "13912345679"
        elif op == "refund":
            payload["amount"] = format_fen(int(payload["amount"].replace(".", "")) + 1)
        elif op in ("freeze", "unfreeze"):
            payload["reason"] = payload["reason"] + "（改）"
        else:
            account_no = "6231880000000000000"
        before = self.state()
        code, answer = code_of(lambda: self.send(op, account_no, payload))
        assert code == "1020", (code, answer)
        if answer is not None:
            assert answer.status == 409
        assert self.state() == before, "a conflicting serial changed the bank's state"

    @precondition(lambda self: bool(self.paid_refunds))
    @rule(data=st.data())
    def query_refund(self, data: st.DataObject) -> None:
        serial = data.draw(st.sampled_from(sorted(self.paid_refunds)))
        answer = self.bank.query_refund(APP, serial)
        assert (answer.status, answer.body["data"]) == (200, self.paid_refunds[serial])

    @precondition(lambda self: bool(self.opened_serials))
    @rule(data=st.data())
    def query_opening(self, data: st.DataObject) -> None:
        serial = data.draw(st.sampled_from(sorted(self.opened_serials)))
        answer = self.bank.query_opening(APP, serial)
        original = next(s for s in self.sent if s.payload["request_serial"] == serial)
        assert (answer.status, answer.body) == (original.status, original.body)

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def ledger_invariants_hold(self) -> None:
        assert self.bank.invariants() == []

    @invariant()
    def balances_match_the_model(self) -> None:
        for no, acct in self.model.items():
            row = self.bank.accounts.row(no)
            assert row["balance_fen"] == acct.balance, (no, row["balance_fen"], acct)
            assert bool(row["frozen"]) is acct.frozen
            assert (row["status"] == "CLOSED") is acct.closed

    @invariant()
    def no_class_iii_balance_above_the_cap(self) -> None:
        top = self.bank.store.scalar(
            "SELECT MAX(balance_fen) FROM accounts WHERE kind = 'CLASS_III'")
        assert top is None or top <= CAP_FEN

    @invariant()
    def daily_outflow_within_the_limit(self) -> None:
        rows = self.bank.store.all(
            "SELECT account_no, period, used_fen FROM outflows WHERE period LIKE 'D:%'")
        for row in rows:
            assert row["used_fen"] <= DAILY_FEN, dict(row)
        recorded = {(r["account_no"], r["period"]): r["used_fen"] for r in rows}
        modelled = {k: v for k, v in self.outflow.items() if k[1].startswith("D:")}
        assert recorded == modelled

    @invariant()
    def one_account_per_successful_opening_serial(self) -> None:
        count = self.bank.store.scalar("SELECT COUNT(*) FROM accounts WHERE kind = 'CLASS_III'")
        assert count == len(self.opened_serials) == len(self.model)


BankMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestBankStateful = BankMachine.TestCase
