"""Reading the bank's replies (return and rejection files) and deciding what they change.

Pure: bytes and the records as the store holds them in, decisions and findings out.

* Names: ``<stem>_RET.txt`` (return), ``<stem>_REJ.txt`` (rejection), a duplicated copy
  ``<stem>_RET_R<n>.txt`` and names in unexpected letter case (``<stem>_ret.TXT``) are all
  recognised; the odd ones are reported as findings.
* A return file that does not end with its trailer, or whose trailer count is wrong, is
  truncated or damaged: :class:`ReplyUnreadable`, nothing is acted on (download it again).
* A readable return is applied record by record, only to records still waiting: a second
  copy changes nothing; a copy that disagrees with a result already recorded is a finding
  and never overturns it (a success stays a success). Records the file lacks stay waiting
  and are flagged; a header whose counts or amounts disagree with its details is a finding.

Example::

    >>> parse_reply_name("DF_DEMO01_20260106_3_RET_R1.txt")
    ReplyName(kind='RET', stem='DF_DEMO01_20260106_3', batch_no=3, copy=1, canonical=False)
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from contracts.codec import FileFormatError, FileReader, load_layout

_NAME = re.compile(r"^(?P<stem>(?P<kind>DF|DK)_[A-Z0-9]{1,16}_[0-9]{8}_(?P<batch>[1-9][0-9]{0,9}))"
                   r"_(?P<reply>RET|REJ)(?:_R(?P<copy>[0-9]+))?\.txt$", re.IGNORECASE)


class ReplyName(NamedTuple):
    kind: str  # RET or REJ
    stem: str  # the request file's name without .txt
    batch_no: int
    copy: int  # 0 for the original, n for a _R<n> copy
    canonical: bool  # exactly the contract's name


def parse_reply_name(name: str) -> ReplyName | None:
    m = _NAME.match(name)
    if m is None:
        return None
    stem = m["stem"][:2].upper() + m["stem"][2:]
    kind = m["reply"].upper()
    copy = int(m["copy"] or 0)
    canonical = name == f"{stem}_{kind}.txt"
    return ReplyName(kind, stem, int(m["batch"]), copy, canonical)


class ReplyUnreadable(Exception):
    """The reply cannot be trusted as a whole (truncated, damaged, not the layout)."""


@dataclass(frozen=True)
class ReturnFile:
    header: dict[str, Any]
    details: list[dict[str, Any]]


@dataclass(frozen=True)
class Rejection:
    header: dict[str, Any]
    details: list[dict[str, Any]]


def read_return(data: bytes) -> ReturnFile:
    try:
        reader = FileReader(load_layout("return"), io.BytesIO(data))
        details = [values for _, values in reader]
    except FileFormatError as exc:
        raise ReplyUnreadable(f"return file unreadable ({exc.code}, line {exc.line}): {exc}") from None
    if reader.trailer is None:
        raise ReplyUnreadable("return file has no trailer: truncated")
    return ReturnFile(reader.header, details)


def read_rejection(data: bytes) -> Rejection:
    try:
        reader = FileReader(load_layout("rejection"), io.BytesIO(data))
        details = [values for _, values in reader]
    except FileFormatError as exc:
        raise ReplyUnreadable(f"rejection file unreadable ({exc.code}, line {exc.line}): {exc}") from None
    return Rejection(reader.header, details)


@dataclass(frozen=True)
class SentRecord:
    """A record of the batch as the store holds it."""

    serial: str
    account_no: str
    amount: int
    state: str  # WAITING, SUCCESS, FAILED, REJECTED
    code: str | None = None


@dataclass(frozen=True)
class Outcome:
    serial: str
    state: str  # SUCCESS or FAILED
    code: str
    reason: str
    bank_serial: str
    finished_at: datetime


@dataclass
class ReturnDecision:
    outcomes: list[Outcome] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)


def header_findings(ret: ReturnFile, expected_count: int, expected_total: int) -> list[str]:
    """What in the header disagrees with its own details or with the batch as sent."""
    h, d = ret.header, ret.details
    found = []
    ok = [x for x in d if x["result"] == "S"]
    bad = [x for x in d if x["result"] == "F"]
    checks = [
        ("record_count", h["record_count"], len(d)),
        ("total_amount", h["total_amount"], sum(x["amount"] for x in d)),
        ("success_count", h["success_count"], len(ok)),
        ("success_amount", h["success_amount"], sum(x["amount"] for x in ok)),
        ("fail_count", h["fail_count"], len(bad)),
        ("fail_amount", h["fail_amount"], sum(x["amount"] for x in bad)),
    ]
    for name, said, counted in checks:
        if said != counted:
            found.append(f"header {name} {said} disagrees with the details ({counted})")
    if h["record_count"] != expected_count or h["total_amount"] != expected_total:
        found.append(f"header says {h['record_count']} records / {h['total_amount']} fen, "
                     f"the batch sent {expected_count} / {expected_total}")
    return found


def decide_return(ret: ReturnFile, sent: Mapping[str, SentRecord], *, expected_count: int,
                  expected_total: int) -> ReturnDecision:
    """What a return file changes in a batch's records (see the module docstring)."""
    decision = ReturnDecision(findings=header_findings(ret, expected_count, expected_total))
    seen: set[str] = set()
    for detail in ret.details:
        serial = detail["serial"]
        record = sent.get(serial)
        if record is None:
            decision.findings.append(f"record {serial} is not in this batch")
            continue
        if serial in seen:
            decision.findings.append(f"record {serial} appears twice in the file")
            continue
        seen.add(serial)
        if detail["account_no"] != record.account_no or detail["amount"] != record.amount:
            decision.findings.append(f"record {serial} differs from what was sent "
                                     f"(account/amount); not applied")
            continue
        state = "SUCCESS" if detail["result"] == "S" else "FAILED"
        if record.state == "WAITING":
            decision.outcomes.append(Outcome(serial, state, detail["code"], detail["reason"],
                                             detail["bank_serial"], detail["finished_at"]))
        elif record.state != state or (state == "FAILED" and record.code != detail["code"]):
            decision.findings.append(f"record {serial} is already {record.state}"
                                     f"{' ' + record.code if record.code else ''}; this file says "
                                     f"{state} {detail['code']}: kept as recorded")
    decision.missing = sorted(s for s, r in sent.items() if s not in seen and r.state == "WAITING")
    if decision.missing:
        decision.findings.append(f"{len(decision.missing)} record(s) missing from the file: "
                                 f"{', '.join(decision.missing[:10])}")
    return decision


def still_waiting(records: Sequence[SentRecord]) -> bool:
    return any(r.state == "WAITING" for r in records)
