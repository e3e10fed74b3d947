"""Fuzzing the batch-file side: the codec and the bank's whole-file intake.

Two properties, shared by the CI tests (``tests/unit/test_codec_fuzz.py``,
``tests/unit/test_intake_fuzz.py``, a few hundred examples) and this module's big-budget run:

* **codec**: ``decode_file`` of any bytes either returns or raises ``FileFormatError``
  with one of the codec's documented codes (4001, 4002, 4007, 4010, 4012, 4013); a valid
  file decodes to exactly what was encoded.
* **intake**: a file handed to ``Bank.file_complete`` (random or a mutated valid file,
  under a valid or a random name) is accepted, or refused with a 4xxx code of
  ``contracts/error_codes.yaml`` and a rejection file. Never an unexpected exception (the
  file desk turns those into 4002 "could not read this file": counted as a crash here),
  and a refused file moves no money, stores no batch and schedules no job, even after the
  clock has moved past any processing delay. After every file the ledger invariants hold.

Mutations of a valid file: byte flips, truncation, inserted bytes (NUL, ``|``, CR, LF, BOMs,
bytes no GBK text has), deleted ranges, re-encoding as UTF-8/UTF-16, a BOM in front, LF-only
or CR-only line ends (or a mix), header count and total off, duplicated/dropped/swapped
lines, separators and control characters inside fields, huge fields and lines, amounts in
the wrong shape (``-1.00``, ``1e2``, ``100.0``, full-width digits), and two or three of
these stacked.

Run the big budget::

    .venv/bin/python -m bench.fuzz_codec --examples 5000 --seed 1

It prints one summary line per property and exits 1 on any crash, undocumented code or
money moved by a refused file.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from contracts.codec import FileFormatError, decode_file, encode_file, load_layout
from contracts.codes import CODES
from simulator.bank import Bank
from simulator.config import load_profile, merge_patch, profile_from_dict
from simulator.domain.identity import make_card_number, make_id_number

APP = "demo-platform"
MERCHANT = "DEMO01"
SUPERVISION = "98010078801000001"
SETTLEMENT = "31010078801000001"
LAYOUT_BY_KIND = {"DF": "disbursement_request", "DK": "withholding_request"}
# What the codec itself may raise (contracts/codec.py docstring); the rest are receiver rules.
CODEC_CODES = frozenset({"4001", "4002", "4007", "4010", "4012", "4013"})
# Every whole-file code of the contract's table.
FILE_CODES = frozenset(c for c in CODES if c.startswith("4"))
# The file desk's answer to an exception intake did not expect (simulator/filedesk.py).
UNEXPECTED_MARK = "could not read this file"
NAMES = ("张三", "李四", "王弢", "欧阳娜娜", "Li Lei", "赵·六", "钱七")
PEOPLE = 4

# -- valid files ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestFile:
    name: str
    data: bytes
    kind: str
    details: tuple[dict[str, Any], ...]


_memo = st.text(alphabet="充值到账消费退款 ABCxyz0123-_·弢", max_size=20)
_serial = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789_-", min_size=1, max_size=32)


@st.composite
def request_files(draw: st.DrawFn, *, day: date, batch_no: int,
                  accounts: tuple[tuple[str, str], ...]) -> RequestFile:
    """A valid DF or DK file for ``day`` and ``batch_no`` over ``accounts`` (number, name)."""
    kind = draw(st.sampled_from(("DF", "DK")))
    n = draw(st.integers(0, 6))
    serials = draw(st.lists(_serial, min_size=n, max_size=n, unique=True))
    details = []
    for seq, serial in enumerate(serials, 1):
        no, holder = draw(st.sampled_from(accounts))
        record: dict[str, Any] = {
            "seq": seq, "serial": serial, "account_no": no, "account_name": holder,
            "amount": draw(st.integers(1, 300_000)), "memo": draw(_memo)}
        if kind == "DK":
            record["agreement_no"] = draw(st.sampled_from(("", "AGR0001", "AGR-77")))
        details.append(record)
    header = {"batch_no": str(batch_no), "business_date": day, "merchant": MERCHANT, "kind": kind,
              "record_count": n, "total_amount": sum(d["amount"] for d in details),
              "account_no": SUPERVISION if kind == "DF" else SETTLEMENT}
    data = encode_file(load_layout(LAYOUT_BY_KIND[kind]), header, details)
    return RequestFile(f"{kind}_{MERCHANT}_{day:%Y%m%d}_{batch_no}.txt", data, kind, tuple(details))


# -- mutations -----------------------------------------------------------------------------

_INSERTS = (b"\x00", b"|", b"\r", b"\n", b"\r\n", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff",
            b"\xff", b"\x80", b"\x8f", "弢".encode("gbk"), b"\x7f", b"\x1b[31m", b"9" * 5000,
            b"|" * 40, "名".encode("gbk") * 3000)
_AMOUNTS = ("-1.00", "1e2", "100.0", "100", "0.00", "1,000.00", "１００.００", "100.000", " 100.00",
            "NaN", "0x10.00", "9999999999999.00", "+1.00", "01.00", "")


def _lines(data: bytes) -> list[str] | None:
    """The file as GBK text lines with their endings; None if it is not GBK."""
    try:
        return data.decode("gbk").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


def _join(lines: list[str]) -> bytes:
    return "".join(lines).encode("gbk", "replace")


def _field_edit(lines: list[str], line: int, index: int, new: str) -> bytes:
    parts = lines[line].split("|")
    if index < len(parts):
        parts[index] = new
    lines = list(lines)
    lines[line] = "|".join(parts)
    return _join(lines)


@st.composite
def mutations(draw: st.DrawFn, data: bytes, depth: int = 0) -> tuple[str, bytes]:
    """``(label, bytes)``: ``data`` with one (or, stacked, several) of the mutations above."""
    kinds = ["flip", "truncate", "insert", "delete", "utf8", "utf16", "bom", "lf", "cr", "mixed_eol",
             "count_off", "total_off", "dup_line", "drop_line", "swap_lines", "field_sep", "control",
             "huge_field", "amount", "random", "none_eol_last"]
    if depth == 0:
        kinds.append("stacked")
    kind = draw(st.sampled_from(kinds))
    size = len(data)
    lines = _lines(data) or []
    pos = draw(st.integers(0, max(size - 1, 0)))
    if kind == "flip" and size:
        flipped = bytearray(data)
        flipped[pos] ^= draw(st.integers(1, 255))
        return kind, bytes(flipped)
    if kind == "truncate":
        return kind, data[:pos]
    if kind == "insert":
        return kind, data[:pos] + draw(st.sampled_from(_INSERTS)) + data[pos:]
    if kind == "delete":
        return kind, data[:pos] + data[pos + draw(st.integers(1, 64)):]
    if kind == "utf8":
        return kind, data.decode("gbk", "replace").encode("utf-8")
    if kind == "utf16":
        return kind, data.decode("gbk", "replace").encode("utf-16")
    if kind == "bom":
        return kind, draw(st.sampled_from((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"))) + data
    if kind == "lf":
        return kind, data.replace(b"\r\n", b"\n")
    if kind == "cr":
        return kind, data.replace(b"\r\n", b"\r")
    if kind == "mixed_eol" and lines:
        i = draw(st.integers(0, len(lines) - 1))
        return kind, _join([ln.replace("\r\n", "\n") if n == i else ln for n, ln in enumerate(lines)])
    if kind == "none_eol_last" and data.endswith(b"\r\n"):
        return kind, data[:-2]
    if kind in ("count_off", "total_off") and lines:
        parts = lines[0].split("|")
        if kind == "count_off" and len(parts) > 5 and parts[5].isdigit():
            return kind, _field_edit(lines, 0, 5, str(int(parts[5]) + draw(st.sampled_from((-1, 1, 7)))))
        if kind == "total_off" and len(parts) > 6:
            return kind, _field_edit(lines, 0, 6, draw(st.sampled_from(("0.01", "0.00", "99999.99"))))
    if kind in ("dup_line", "drop_line", "swap_lines") and lines:
        i = draw(st.integers(0, len(lines) - 1))
        j = draw(st.integers(0, len(lines) - 1))
        new = list(lines)
        if kind == "dup_line":
            new.insert(i, lines[i])
        elif kind == "drop_line":
            del new[i]
        else:
            new[i], new[j] = new[j], new[i]
        return kind, _join(new)
    if kind in ("field_sep", "control", "huge_field", "amount") and lines:
        line = draw(st.integers(0, len(lines) - 1))
        width = len(lines[line].split("|"))
        index = draw(st.integers(0, max(width - 1, 0)))
        if kind == "field_sep":
            new_text = draw(st.sampled_from(("张|三", "|", "a|b|c")))
        elif kind == "control":
            new_text = draw(st.sampled_from(("a\x00b", "\t", "x\x1by", "\x7f")))
        elif kind == "huge_field":
            new_text = "名" * draw(st.sampled_from((31, 61, 1000, 100_000)))
        else:
            index = 6 if line == 0 else 5
            new_text = draw(st.sampled_from(_AMOUNTS))
        return kind, _field_edit(lines, line, index, new_text)
    if kind == "stacked":
        label, out = "stacked", data
        for _ in range(draw(st.integers(2, 3))):
            sub, out = draw(mutations(out, depth=1))
            label += "+" + sub
        return label, out
    if kind == "random":
        return kind, draw(st.binary(max_size=600))
    return "unchanged", data


_NAME_ATTACKS = ("../DF_DEMO01_20260105_1.txt", "/etc/passwd", "DF_DEMO01_20260105_1.TXT",
                 "df_demo01_20260105_1.txt", "DF_DEMO01_20261340_1.txt", "DF_DEMO01_20260105_01.txt",
                 "DF_DEMO01_20260105_1.txt.part", "XX_DEMO01_20260105_1.txt", "DF_demo01_20260105_1.txt",
                 "DF_DEMO01_20260105_1 .txt", "DF_DEMO01_20260105_12345678901.txt", "", ".hidden",
                 "RET_DF_DEMO01_20260105_1.txt", "DF_DEMO01_20260105_1_RET.txt", "名.txt", "a\x00b")


def file_names(valid: str) -> st.SearchStrategy[str]:
    """Mostly the valid name; sometimes another platform's, a random or a hostile one."""
    return st.one_of(st.just(valid), st.just(valid), st.just(valid),
                     st.sampled_from(_NAME_ATTACKS), st.text(max_size=80))


# -- the codec property ------------------------------------------------------------------


def classify_decode(layout_name: str, data: bytes) -> str:
    """``accepted``, ``rejected:<code>``, or a problem: ``undocumented:<code>``, ``crash:<Exc>``."""
    try:
        decode_file(load_layout(layout_name), data)
    except FileFormatError as exc:
        if exc.code not in CODEC_CODES:
            return f"undocumented:{exc.code}"
        return f"rejected:{exc.code}"
    except Exception as exc:  # the point is to catch what nobody expected
        return f"crash:{type(exc).__name__}: {exc}"[:300]
    return "accepted"


def is_problem(outcome: str) -> bool:
    return outcome.startswith(("crash:", "undocumented:", "money:", "state:", "invariants:"))


# -- the intake property ---------------------------------------------------------------------


def _profile() -> Any:
    platform = load_profile(None).as_dict()["platforms"][0]
    platform["supervision_opening_balance"] = "1000000.00"
    return profile_from_dict(merge_patch(load_profile(None).as_dict(),
                                         {"bank": {"open_active": True}, "platforms": [platform]}))


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class IntakeRig:
    """A Bank (state in ``state_dir``) with a few funded accounts, fed one file at a time.

    ``feed`` hands a file over as the SFTP server would, advances the clock past the
    processing and return delays, and returns the outcome (``accepted``,
    ``rejected:<code>`` or a problem, see :func:`is_problem`).
    """

    state_dir: Path
    bank: Bank = field(init=False)
    accounts: tuple[tuple[str, str], ...] = field(init=False)
    # Fixed-width batch numbers: a file's length must not depend on how many came before,
    # or hypothesis sees the same choices draw differently (its mutation offsets are bounded
    # by the length).
    next_batch: int = 100_000_000
    outcomes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    fed: int = 0
    FRESH_EVERY = 200

    def __post_init__(self) -> None:
        # The file desk logs an unexpected intake failure before it answers 4002: listen.
        self._errors = _Captured()
        self._logger = logging.getLogger("banksim")
        self._level = self._logger.level
        self._logger.addHandler(self._errors)
        if self._logger.getEffectiveLevel() > logging.ERROR:
            self._logger.setLevel(logging.ERROR)
        self.generation = 0
        self._build()

    def _build(self) -> None:
        """A fresh bank (after a crash the old one may be wedged: count, then go on)."""
        self.generation += 1
        self.bank = Bank(_profile(), self.state_dir / f"bank-{self.generation}")
        found = []
        for i in range(PEOPLE):
            answer = self.bank.open_account(APP, {
                "request_serial": f"FUZZ-O{i}", "name": NAMES[i],
                "id_number": make_id_number("310101", date(1990, 1, 1), i + 1),
                "mobile": "13800138000", "bound_card_number": make_card_number("622202", 19, i),
                "bound_card_kind": "DEBIT_I"})
            assert answer.status == 200, answer.body
            no = answer.body["data"]["account_no"]
            self.bank.deposit(no, "500.00")
            found.append((no, NAMES[i]))
        # Records for an account that does not exist and a name that does not match.
        found += [("6231880000000000017", "无此人"), (found[0][0], "冒名")]
        self.accounts = tuple(found)

    def close(self) -> None:
        self._logger.removeHandler(self._errors)
        self._logger.setLevel(self._level)
        self.bank.close()

    @property
    def day(self) -> date:
        return self.bank.clock.business_date()

    def batch_no(self) -> int:
        self.next_batch += 1
        return self.next_batch

    def _state(self) -> tuple[Any, ...]:
        s = self.bank.store
        balances = tuple(s.all("SELECT account_no, SUM(amount_fen) FROM postings "
                               "GROUP BY account_no ORDER BY account_no"))
        return (tuple(tuple(r) for r in balances), s.scalar("SELECT COUNT(*) FROM postings"),
                s.scalar("SELECT COUNT(*) FROM batches"), s.scalar("SELECT COUNT(*) FROM batch_records"),
                s.scalar("SELECT COUNT(*) FROM outflows"))

    def feed(self, name: str, data: bytes, label: str = "") -> str:
        self.fed += 1
        if self.fed % self.FRESH_EVERY == 0:
            # The invariants check reads the whole ledger: keep it small in long runs.
            self.bank.close()
            self._build()
        bank = self.bank
        before = self._state()
        errors_before = len(self._errors.records)
        rejections_before = len(bank.files.rejections(APP))
        # Written under a name of its own: the name the bank is told may be anything.
        upload = (bank.outbox.jail(APP) / "upload" / "batches"
                  / f"fuzz-{self.next_batch}-{time.monotonic_ns()}")
        upload.write_bytes(data)
        try:
            answer = bank.file_complete(APP, "batches", name, upload)
        except Exception as exc:
            return self._problem(f"crash:{type(exc).__name__}: {exc}", name, data, label)
        finally:
            upload.unlink(missing_ok=True)
        bank.advance_to(bank.clock.now() + timedelta(hours=1))
        if len(self._errors.records) > errors_before:
            rec = self._errors.records[-1]
            return self._problem(f"crash:logged {rec.getMessage()[:200]}", name, data, label)
        violations = bank.invariants()
        if violations:
            return self._problem(f"invariants:{violations[:3]}", name, data, label)
        if answer.get("accepted"):
            outcome = "accepted"
            state = bank.files.batches(APP)[-1]["state"]
            if state != "RETURNED":
                return self._problem(f"state:accepted batch is {state} an hour later", name, data, label)
        else:
            code = str(answer.get("code"))
            if UNEXPECTED_MARK in str(answer.get("reason")):
                return self._problem(f"crash:{answer.get('reason')}", name, data, label)
            if code not in FILE_CODES:
                return self._problem(f"undocumented:{code}", name, data, label)
            if self._state() != before:
                return self._problem(f"money:refused file ({code}) changed the ledger or batches",
                                     name, data, label)
            if len(bank.files.rejections(APP)) != rejections_before + 1:
                return self._problem("state:refused file without a rejection record", name, data, label)
            outcome = f"rejected:{code}"
        self.outcomes[outcome] += 1
        return outcome

    def _problem(self, outcome: str, name: str, data: bytes, label: str) -> str:
        self.outcomes[outcome.split(":", 1)[0]] += 1
        self.problems.append(f"{outcome} [{label}] name={name!r} data={data[:160]!r}")
        if outcome.startswith(("crash:", "invariants:")):
            try:
                self.bank.close()
            except Exception as exc:  # a wedged bank may fail to close too
                self.problems.append(f"crash:closing the bank after a crash: {type(exc).__name__}: {exc}")
            self._build()
        return outcome


# -- the big-budget run ------------------------------------------------------------------------


def _run_settings(examples: int, seed: int | None) -> settings:
    return settings(max_examples=examples, deadline=None, database=None, derandomize=seed is None,
                    phases=[Phase.explicit, Phase.generate],  # no shrinking: count, don't stop
                    suppress_health_check=list(HealthCheck))


def run_codec(examples: int, seed: int | None) -> tuple[Counter[str], list[str]]:
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    accounts = (("6231880000000100016", "张三"), ("6231880000000100024", "王弢"))

    @_run_settings(examples, seed)
    @given(st.data())
    def prop(data: st.DataObject) -> None:
        f = data.draw(request_files(day=date(2026, 1, 5), batch_no=data.draw(st.integers(1, 10**9)),
                                    accounts=accounts))
        label, mutated = data.draw(mutations(f.data))
        layout = LAYOUT_BY_KIND[f.kind]
        outcome = classify_decode(layout, mutated)
        if label == "unchanged":
            decoded = decode_file(load_layout(layout), mutated)
            if [dict(d) for d in decoded.details] != [_norm(d) for d in f.details]:
                outcome = "crash:round trip changed the records"
        outcomes[outcome.split(":", 1)[0] if is_problem(outcome) else outcome] += 1
        if is_problem(outcome):
            problems.append(f"{outcome} [{label}] {mutated[:160]!r}")

    _seeded(prop, seed)()
    return outcomes, problems


def _norm(d: dict[str, Any]) -> dict[str, Any]:
    out = dict(d)
    out.setdefault("memo", "")
    if "agreement_no" in out:
        out["agreement_no"] = out["agreement_no"] or ""
    return out


def run_intake(examples: int, seed: int | None, state_dir: Path) -> IntakeRig:
    rig = IntakeRig(state_dir)

    @_run_settings(examples, seed)
    @given(st.data())
    def prop(data: st.DataObject) -> None:
        f = data.draw(request_files(day=rig.day, batch_no=rig.batch_no(), accounts=rig.accounts))
        label, mutated = data.draw(st.one_of(st.just(("unchanged", f.data)), mutations(f.data)))
        rig.feed(data.draw(file_names(f.name)), mutated, label)

    try:
        _seeded(prop, seed)()
    finally:
        rig.close()
    return rig


def _seeded(test: Callable[[], None], seed: int | None) -> Callable[[], None]:
    if seed is None:
        return test
    from hypothesis import seed as hseed

    return hseed(seed)(test)


def summary(name: str, examples: int, outcomes: Counter[str], problems: list[str], took: float) -> str:
    crashes = sum(n for k, n in outcomes.items() if k.startswith("crash"))
    undocumented = sum(n for k, n in outcomes.items() if k.startswith("undocumented"))
    money = sum(n for k, n in outcomes.items() if k.startswith("money"))
    other = len(problems) - crashes - undocumented - money
    spread = ", ".join(f"{k} {n}" for k, n in sorted(outcomes.items()))
    return (f"{name}: {examples} examples in {took:.1f} s; crashes {crashes}, undocumented codes "
            f"{undocumented}, money moved by refused files {money}, other problems {other}\n"
            f"  outcomes: {spread}")


def _print_problems(problems: list[str]) -> None:
    """One example per distinct problem (its text up to the first detail), with a count."""
    kinds: Counter[str] = Counter()
    first: dict[str, str] = {}
    for p in problems:
        # One key per kind of problem: quoted values (names, characters) vary per example.
        key = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", p.split(" [", 1)[0])[:110]
        kinds[key] += 1
        first.setdefault(key, p)
    for key, n in kinds.most_common():
        print(f"  PROBLEM x{n}: {first[key][:400]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz_codec", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=5000, help="examples per property")
    parser.add_argument("--seed", type=int, default=None, help="default: derandomized (fixed) cases")
    parser.add_argument("--only", choices=("codec", "intake"))
    args = parser.parse_args(argv)
    import tempfile

    failed = False
    if args.only in (None, "codec"):
        t0 = time.monotonic()
        outcomes, problems = run_codec(args.examples, args.seed)
        print(summary("codec", sum(outcomes.values()), outcomes, problems, time.monotonic() - t0), flush=True)
        failed |= bool(problems)
        _print_problems(problems)
    if args.only in (None, "intake"):
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="banksim-fuzz-") as tmp:
            rig = run_intake(args.examples, args.seed, Path(tmp) / "state")
        print(summary("intake", sum(rig.outcomes.values()), rig.outcomes, rig.problems,
                      time.monotonic() - t0), flush=True)
        failed |= bool(rig.problems)
        _print_problems(rig.problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
