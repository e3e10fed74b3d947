"""The scenario context: what one scenario has set up and sent, shared by its steps.

``scenario_context`` is a function-scoped fixture on a freshly reset simulator (plugin
fixture ``banksim_reset``): each scenario starts on the profile's start date with no
accounts, whatever ran before it. Steps keep people (by the name the scenario gives them)
and batches (by label) here and find them again by those names.

Example::

    def test_something(scenario_context):
        zhang = scenario_context.open_active("张三")
        scenario_context.control.deposit(zhang.account_no, "500.00")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx
import pytest

from contracts.codec import DecodedFile, decode_file, encode_file, load_layout, return_file_name
from contracts.money import format_fen, parse_yuan
from features.steps.people import make_identity
from simulator.testing.bank_api import BATCHES, RETURNS, BankApiClient, SftpSession
from simulator.testing.control import ControlClient
from simulator.testing.handle import SimulatorHandle

# 19 digits but not this bank's BIN: a well-formed account number the bank never opened.
UNKNOWN_ACCOUNT = "6200000000000000000"
MEMO = {"DF": "充值到账", "DK": "消费扣款"}


@dataclass
class Person:
    """A user of the platform; ``name`` is also the account name the bank holds."""

    name: str
    identity: dict[str, str]
    account_no: str | None = None
    opening_serial: str | None = None
    # The name the platform writes in batch records (differs for a name mismatch).
    name_on_file: str | None = None

    @property
    def account(self) -> str:
        assert self.account_no is not None, f"{self.name} has no account in this scenario"
        return self.account_no


@dataclass(frozen=True)
class Record:
    seq: int
    serial: str
    person: str
    account_no: str
    account_name: str
    fen: int


@dataclass
class Batch:
    """One uploaded batch file and the bank's balances just before it went up."""

    label: str
    kind: str
    batch_no: str
    file_name: str
    records: list[Record]
    balances_before: dict[str, str] = field(default_factory=dict)

    def record_for(self, name: str) -> Record:
        found = [r for r in self.records if r.person == name]
        assert len(found) == 1, f"batch {self.label} has {len(found)} records for {name}"
        return found[0]


class ScenarioContext:
    """One scenario's simulator, clients and the people and batches it made."""

    def __init__(self, handle: SimulatorHandle, control: ControlClient, api: BankApiClient,
                 request: pytest.FixtureRequest) -> None:
        self.handle = handle
        self.control = control
        self.api = api
        self._request = request
        clock = control.clock()
        # T: the business date the scenario starts on; "T+1 10:00" is relative to it.
        self.business_date = date.fromisoformat(clock["business_date"])
        self.profile = control.profile()
        self.seed = int(self.profile["seed"])
        [self.platform] = [p for p in self.profile["platforms"] if p["app_id"] == handle.app_id]
        self.people: dict[str, Person] = {}
        self.batches: dict[str, Batch] = {}
        self._sftp: SftpSession | None = None
        self._serials = 0

    # -- clients ---------------------------------------------------------------------

    @property
    def sftp(self) -> SftpSession:
        """The scenario's SFTP session, connected on first use (most scenarios need none)."""
        if self._sftp is None:
            self._sftp = self._request.getfixturevalue("banksim_sftp")
        return self._sftp

    def next_serial(self, prefix: str) -> str:
        self._serials += 1
        return f"{prefix}-{self._serials:04d}"

    # -- people ----------------------------------------------------------------------

    def person(self, name: str) -> Person:
        assert name in self.people, f"no user {name} in this scenario (a Given step makes one)"
        return self.people[name]

    def new_person(self, name: str) -> Person:
        if name not in self.people:
            self.people[name] = Person(name, make_identity(name, seed=self.seed))
        return self.people[name]

    def apply(self, person: Person, *, serial: str | None = None,
              identity: dict[str, str] | None = None) -> httpx.Response:
        """Send ``person``'s opening request; remember the account when it opened."""
        serial = serial or self.next_serial("OPEN")
        answer = self.api.open_account(serial, identity or person.identity)
        if answer.status_code == 200:
            person.account_no = answer.json()["data"]["account_no"]
            person.opening_serial = serial
        return answer

    def open_active(self, name: str) -> Person:
        """``name`` with an opened account whose ID-card images the bank has approved."""
        person = self.new_person(name)
        answer = self.apply(person)
        assert answer.status_code == 200, f"opening for {name}: {answer.text}"
        self.control.activate(person.account)
        return person

    def account_view(self, name: str) -> dict[str, Any]:
        """The account as the platform sees it through the bank API."""
        answer = self.api.query_account(self.person(name).account)
        assert answer.status_code == 200, answer.text
        data: dict[str, Any] = answer.json()["data"]
        return data

    # -- money -----------------------------------------------------------------------

    def balance(self, account_no: str) -> int:
        return parse_yuan(self.control.account(account_no)["balance"])

    def balances(self) -> dict[str, str]:
        return {a["account_no"]: a["balance"] for a in self.control.accounts(limit=10_000)}

    def deposit(self, account_no: str, fen: int) -> None:
        self.control.deposit(account_no, format_fen(fen), "scenario set-up")

    # -- batch files -----------------------------------------------------------------

    def build_batch(self, kind: str, label: str, entries: list[tuple[str, int]], *,
                    batch_no: str | None = None) -> Batch:
        number = batch_no or label[1:]
        day = date.fromisoformat(self.control.clock()["business_date"])
        name = f"{kind}_{self.platform['merchant']}_{day:%Y%m%d}_{number}.txt"
        records = []
        for seq, (who, fen) in enumerate(entries, 1):
            person = self.person(who)
            records.append(Record(seq, f"{label}-{seq:02d}", who, person.account,
                                  person.name_on_file or person.name, fen))
        return Batch(label, kind, number, name, records)

    def encode(self, batch: Batch, *, count: int | None = None, total: int | None = None) -> bytes:
        """The batch as its request layout says (GBK, CRLF, ``|``); ``count``/``total``
        override the header's figures (to build a file the bank must refuse)."""
        layout = load_layout("disbursement_request" if batch.kind == "DF" else "withholding_request")
        day = date.fromisoformat(batch.file_name.split("_")[2])
        header = {"batch_no": batch.batch_no, "business_date": day, "merchant": self.platform["merchant"],
                  "kind": batch.kind,
                  "record_count": len(batch.records) if count is None else count,
                  "total_amount": sum(r.fen for r in batch.records) if total is None else total,
                  "account_no": self.platform["supervision_account" if batch.kind == "DF"
                                              else "settlement_account"]}
        details = [{"seq": r.seq, "serial": r.serial, "account_no": r.account_no,
                    "account_name": r.account_name, "amount": r.fen, "memo": MEMO[batch.kind]}
                   for r in batch.records]
        return encode_file(layout, header, details)

    def upload(self, batch: Batch, data: bytes) -> None:
        """Upload over SFTP the documented way (temporary name, then rename)."""
        batch.balances_before = self.balances()
        self.sftp.upload(f"{BATCHES}/{batch.file_name}", data)
        self.batches[batch.label] = batch

    def batch(self, label: str) -> Batch:
        assert label in self.batches, f"no batch {label} was uploaded in this scenario"
        return self.batches[label]

    def returns(self) -> list[str]:
        return self.sftp.listdir(RETURNS)

    def return_name(self, label: str) -> str:
        return return_file_name(self.batch(label).file_name)

    def read_return(self, label: str, name: str | None = None) -> DecodedFile:
        """The batch's return file over SFTP, decoded with the contract's codec."""
        data = self.sftp.read(f"{RETURNS}/{name or self.return_name(label)}")
        return decode_file(load_layout("return"), data)

    def manifest(self, label: str) -> dict[str, Any]:
        return self.control.manifest(self.handle.app_id, self.batch(label).batch_no)
