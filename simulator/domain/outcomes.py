"""Record outcomes from the profile: ordered rules first, then seeded rates per code.

Pure functions of the profile, the seed and the record: the draw for a record is keyed by
(seed, platform, batch, serial), never taken from a shared random stream, so the same
file gives the same return file byte for byte whatever else the bank processed meanwhile.
The ledger's own checks (balance, status, limits) come after these in the batch engine.

Scoped rates: a rule whose action has a ``probability`` below 1 applies to a matching
record only when the record's draw for that rule (keyed by the rule's index too) falls
below it; a record it spares goes on to the next rules. So "30% of DF records fail 3028"
is a rule ``{match: {kind: DF}, action: {fail: "3028", probability: 0.3}}``, and leaves
withholding alone, where the top-level ``rates`` apply to every record.

Retries: a rule with ``match.attempt: N`` applies up to the N-th attempt of a record. A
re-submitted record has a new serial (the layouts require it), so the attempt counts what
is the same: 1 + the records of the same platform, kind, account and amount that failed in
batches processed before this one (:func:`earlier_failures`, read once per batch). The default profile's 0.28
(3028, system busy, retryable) has ``attempt: 1``: the re-submission goes through.

Example::

    decide_record(settings, seed, RecordFacts("DF", "demo", "B1", "S1", 1, "6231...", "张三", 17))
    # -> Forced("3017", "magic 0.17: account frozen") with the default profile
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from simulator.config import BatchSettings, FileFaultAction, FileFaultMatch, RecordMatch, RecordRule
from simulator.domain.faults import draw
from simulator.store import Store


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
    attempt: int = 1


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
        m.attempt is None or r.attempt <= m.attempt,
    )
    return all(checks)


def _drawn(rule: RecordRule, seed: int, index: int, app_id: str, batch_no: str, serial: str) -> bool:
    """Whether a matching record falls inside the rule's probability (always, at 1)."""
    p = rule.action.probability
    return p >= 1.0 or draw(seed, "record-rule", index, app_id, batch_no, serial) < p


def decide_record(settings: BatchSettings, seed: int, r: RecordFacts) -> Forced | None:
    """The profile's verdict on a record, or None to let the ledger decide."""
    for index, rule in enumerate(settings.rules):
        if _matches(rule.match, r) and not (rule.not_ and _matches(rule.not_, r)) and \
                _drawn(rule, seed, index, r.app_id, r.batch_no, r.serial):
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


Test = Callable[[str, int, str, str, int], bool]
# Loads the failed (account_no, amount_fen) -> count of earlier batches, for amounts up to
# the given ceiling (None: all); see the module's docstring and :func:`earlier_failures`.
Failures = Callable[[int | None], Mapping[tuple[str, int], int]]


def earlier_failures(store: Store, app_id: str, kind: str, batch_no: str,
                     ceiling: int | None) -> dict[tuple[str, int], int]:
    """Failed records of ``app_id``'s ``kind`` batches processed before ``batch_no``, counted
    by (account, amount), read from the stored return lines; amounts above ``ceiling`` are
    left out (no attempt rule could use them).

    Loaded once per batch, and only when a rule with an ``attempt`` condition would fail
    one of its records: one pass over the platform's earlier return lines that hold a
    failure, however many of the batch's records ask.
    """
    found: dict[tuple[str, int], int] = {}
    for (lines,) in store.all(
            "SELECT r.lines FROM batch_results r JOIN batches b "
            "ON b.app_id = r.app_id AND b.batch_no = r.batch_no "
            "WHERE r.app_id = ? AND b.kind = ? AND b.batch_no <> ? AND b.state <> 'ACCEPTED' "
            "AND instr(r.lines, ?) > 0", (app_id, kind, batch_no, b"|F|")):
        for line in bytes(lines).decode("gbk").split("\r\n"):
            # The return detail: D|seq|serial|account|name|amount|bank serial|S/F|code|...
            fields = line.split("|")
            if len(fields) > 7 and fields[7] == "F":
                amount = int(fields[5].replace(".", ""))
                if ceiling is None or amount <= ceiling:
                    key = (fields[3], amount)
                    found[key] = found.get(key, 0) + 1
    return found


class RecordDecider:
    """:func:`decide_record` for the records of one batch, compiled once per batch.

    The batch's kind and number are the same for every record, so rules that cannot
    match them are dropped up front, regexes are compiled once, and when every remaining
    rule bounds the amount (the magic-amount rules do), a record above the highest bound
    skips the rules altogether. Same answers as :func:`decide_record`, record by record.

    Example::

        decide = RecordDecider(settings, seed, "DF", "demo", "B1")
        decide("S1", 1, "6231...", "张三", 17)   # Forced("3017", ...) with the default profile
    """

    def __init__(self, settings: BatchSettings, seed: int, kind: str, app_id: str,
                 batch_no: str, failures: Failures | None = None) -> None:
        # (tests, unless, verdict, rule index, probability, up to which attempt)
        self._rules: list[tuple[list[Test], list[Test] | None, Forced, int, float, int | None]] = []
        self._load_failures = failures
        self._failures: Mapping[tuple[str, int], int] | None = None
        bounds: list[int | None] = []
        attempt_bounds: list[int | None] = []
        for index, rule in enumerate(settings.rules):
            tests = _compile_match(rule.match, kind, batch_no)
            if tests is None:
                continue
            unless = _compile_match(rule.not_, kind, batch_no) if rule.not_ else None
            self._rules.append((tests, unless, Forced(rule.action.fail, rule.name or f"rule {index}",
                                                      rule.action.reason),
                                index, rule.action.probability, rule.match.attempt))
            bounds.append(rule.match.amount_max if rule.match.amount is None else rule.match.amount)
            if rule.match.attempt is not None:
                attempt_bounds.append(bounds[-1])
        # The highest amount an attempt rule can match (None: unbounded).
        self._attempt_ceiling = None if None in attempt_bounds else max(
            (b for b in attempt_bounds if b is not None), default=None)
        self._ceiling: int | None = None
        if bounds and all(b is not None for b in bounds):
            self._ceiling = max(b for b in bounds if b is not None)
        self._rates = [(code, settings.rates[code]) for code in sorted(settings.rates)]
        self._seed, self._app_id, self._batch_no = seed, app_id, batch_no
        self.trivial = not self._rules and not self._rates
        """True when no rule can apply and there are no rates: every record goes to the ledger."""

    def __call__(self, serial: str, position: int, account_no: str, account_name: str,
                 amount_fen: int) -> Forced | None:
        if self._rules and (self._ceiling is None or amount_fen <= self._ceiling):
            args = (serial, position, account_no, account_name, amount_fen)
            for tests, unless, forced, index, probability, up_to in self._rules:
                if all(t(*args) for t in tests) and not (
                        unless is not None and all(t(*args) for t in unless)) and (
                        probability >= 1.0 or draw(self._seed, "record-rule", index, self._app_id,
                                                   self._batch_no, serial) < probability) and (
                        up_to is None or self._attempt(account_no, amount_fen) <= up_to):
                    return forced
        if self._rates:
            u = draw(self._seed, "record", self._app_id, self._batch_no, serial)
            edge = 0.0
            for code, rate in self._rates:
                edge += rate
                if u < edge:
                    return Forced(code, f"rate {code}")
        return None


    def _attempt(self, account_no: str, amount_fen: int) -> int:
        if self._failures is None:
            self._failures = {} if self._load_failures is None else self._load_failures(
                self._attempt_ceiling)
        return 1 + self._failures.get((account_no, amount_fen), 0)


def _compile_match(m: RecordMatch, kind: str, batch_no: str) -> list[Test] | None:
    """Per-record tests of ``m`` (all must hold), or None if it cannot match this batch."""
    if m.kind is not None and m.kind != kind:
        return None
    if m.batch_no is not None and re.fullmatch(m.batch_no, batch_no) is None:
        return None
    tests: list[Test] = []
    if m.position is not None:
        position = m.position
        tests.append(lambda s, p, a, n, amt: p == position)
    if m.amount is not None:
        amount = m.amount
        tests.append(lambda s, p, a, n, amt: amt == amount)
    if m.amount_min is not None:
        low = m.amount_min
        tests.append(lambda s, p, a, n, amt: amt >= low)
    if m.amount_max is not None:
        high = m.amount_max
        tests.append(lambda s, p, a, n, amt: amt <= high)
    if m.amount_cents is not None:
        cents = int(m.amount_cents)
        tests.append(lambda s, p, a, n, amt: amt % 100 == cents)
    if m.serial is not None:
        serial = re.compile(m.serial).fullmatch
        tests.append(lambda s, p, a, n, amt: serial(s) is not None)
    if m.account_no is not None:
        account = re.compile(m.account_no).fullmatch
        tests.append(lambda s, p, a, n, amt: account(a) is not None)
    if m.account_name is not None:
        name = re.compile(m.account_name).fullmatch
        tests.append(lambda s, p, a, n, amt: name(n) is not None)
    return tests
