"""Record outcomes from the profile: ordered rules first, then seeded rates per code.

Pure functions of the profile, the seed and the record: the draw for a record is keyed by
(seed, platform, batch, serial), never taken from a shared random stream, so the same
file gives the same return file byte for byte whatever else the bank processed meanwhile.
The ledger's own checks (balance, status, limits) come after these in the batch engine.

Example::

    decide_record(settings, seed, RecordFacts("DF", "demo", "B1", "S1", 1, "6231...", "张三", 17))
    # -> Forced("3017", "magic 0.17: account frozen") with the default profile
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from simulator.config import BatchSettings, FileFaultAction, FileFaultMatch, RecordMatch
from simulator.domain.faults import draw


@dataclass(frozen=True)
class RecordFacts:
    kind: str
    app_id: str
    batch_no: str
    serial: str
    position: int
    account_no: str
    account_name: str
    amount_fen: int


@dataclass(frozen=True)
class Forced:
    """A failure the profile decided; ``by`` names the rule or rate (for the manifest)."""

    code: str
    by: str
    reason: str | None = None


def _matches(m: RecordMatch, r: RecordFacts) -> bool:
    checks = (
        m.kind is None or m.kind == r.kind,
        m.position is None or m.position == r.position,
        m.amount is None or m.amount == r.amount_fen,
        m.amount_min is None or r.amount_fen >= m.amount_min,
        m.amount_max is None or r.amount_fen <= m.amount_max,
        m.amount_cents is None or f"{r.amount_fen % 100:02d}" == m.amount_cents,
        m.batch_no is None or re.fullmatch(m.batch_no, r.batch_no) is not None,
        m.serial is None or re.fullmatch(m.serial, r.serial) is not None,
        m.account_no is None or re.fullmatch(m.account_no, r.account_no) is not None,
        m.account_name is None or re.fullmatch(m.account_name, r.account_name) is not None,
    )
    return all(checks)


def decide_record(settings: BatchSettings, seed: int, r: RecordFacts) -> Forced | None:
    """The profile's verdict on a record, or None to let the ledger decide."""
    for index, rule in enumerate(settings.rules):
        if _matches(rule.match, r) and not (rule.not_ and _matches(rule.not_, r)):
            return Forced(rule.action.fail, rule.name or f"rule {index}", rule.action.reason)
    if settings.rates:
        u = draw(seed, "record", r.app_id, r.batch_no, r.serial)
        edge = 0.0
        # Sorted codes: the mapping from draw to code must not depend on YAML key order.
        for code in sorted(settings.rates):
            edge += settings.rates[code]
            if u < edge:
                return Forced(code, f"rate {code}")
    return None


def _file_matches(m: FileFaultMatch, kind: str, batch_no: str) -> bool:
    return (m.kind is None or m.kind == kind) and (
        m.batch_no is None or re.fullmatch(m.batch_no, batch_no) is not None)


def decide_file_fault(settings: BatchSettings, seed: int, app_id: str, kind: str,
                      batch_no: str) -> tuple[FileFaultAction, str] | None:
    """The return-file fault for a batch (rules first, then rates), or None."""
    for index, rule in enumerate(settings.file_faults):
        if _file_matches(rule.match, kind, batch_no):
            return rule.action, rule.name or f"file rule {index}"
    rates = settings.file_fault_rates
    key = (app_id, batch_no)
    if rates.never and draw(seed, "file-never", *key) < rates.never:
        return FileFaultAction(never=True), "rate never"
    if rates.late and draw(seed, "file-late", *key) < rates.late:
        return FileFaultAction(late=rates.late_by), "rate late"
    if rates.twice and draw(seed, "file-twice", *key) < rates.twice:
        return FileFaultAction(twice=True), "rate twice"
    if rates.truncated and draw(seed, "file-truncated", *key) < rates.truncated:
        return FileFaultAction(truncated=True), "rate truncated"
    if rates.missing_records and draw(seed, "file-missing", *key) < rates.missing_records:
        return FileFaultAction(missing_records=1), "rate missing_records"
    if rates.unexpected_name and draw(seed, "file-name", *key) < rates.unexpected_name:
        return FileFaultAction(unexpected_name=True), "rate unexpected_name"
    return None
