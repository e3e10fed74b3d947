"""Batch intake against random, mutated and malformed files: a code, never a crash, no money.

* A property test (hypothesis, bounded for CI) feeds a Bank valid files, mutated files and
  files under hostile names, as the SFTP server would hand them over, and advances the clock
  past the processing delay after each: every file is accepted (and then processed and
  returned) or refused with a 4xxx code of ``contracts/error_codes.yaml``; nothing raises or
  is logged as unexpected; a refused file changes no balance, stores no batch or record; the
  ledger invariants hold throughout. :mod:`bench.fuzz_codec` holds the strategies and runs
  the same property with a big budget.
* The corpus ``fixtures/malformed/`` (listed in its README) pins one exact code per file.
* Hostile upload names and rejection reasons the rejection file cannot hold are pinned on
  their own: the platform must hear about every file, and one bad file must not stop the
  bank from answering the next.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bench.fuzz_codec import FILE_CODES, IntakeRig, file_names, mutations, request_files
from contracts.codec import FileReader, load_layout, rejection_file_name

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "fixtures" / "malformed"
APP = "demo-platform"

# The corpus and the code each file must get (also the table in fixtures/malformed/README.md).
EXPECTED = {
    "DF_DEMO01_20260105_101.txt": "4001",  # saved as UTF-8, not GBK
    "DF_DEMO01_20260105_102.txt": "4004",  # header total one fen off
    "DF_DEMO01_20260105_103.txt": "4003",  # header count says 3, two details
    "DF_DEMO01_20260105_104.txt": "4006",  # the same serial twice
    "DF_DEMO01_20260105_105.txt": "4002",  # no header line
    "DF_DEMO01_20260105_106.txt": "4002",  # a trailer line in a layout without one
    "DF_DEMO01_20260105_107.txt": "4002",  # commas instead of |
    "DF_DEMO01_20260105_108.txt": "4002",  # LF-only line ends
    "DF_DEMO01_20260105_109.txt": "4002",  # cut in the middle of the last line
    "DF_DEMO01_20260105_110.txt": "4013",  # a 100 KB memo on one line
    "XX_DEMO01_20260105_111.txt": "4008",  # unknown kind in the name
    "DF_DEMO01_20260301_112.txt": "4009",  # business date not the bank's
    "DF_DEMO01_20260105_113.txt": "4007",  # negative amounts
    "DF_DEMO01_20260105_114.txt": "4007",  # float-looking amount 1e2
    "DF_DEMO01_20260105_115.txt": "4007",  # one decimal (150.5)
    "DF_DEMO01_20260105_116.txt": "4010",  # empty
    "DF_DEMO01_20260105_117.txt": "4012",  # an 18-digit account number
    "DF_DEMO01_20260105_118.txt": "4002",  # UTF-8 BOM before the header
    "DF_DEMO01_20260105_119.txt": "4002",  # seq 2 before seq 1
    "DF_DEMO01_20260105_120.txt": "4013",  # NUL inside a name
    "DF_DEMO01_20260105_121.txt": "4012",  # header account is not the platform's 98 account
    "DF_DEMO01_20260105_122.txt": "4002",  # header merchant differs from the name
    "DF_DEMO01_20260105_123.txt": "4007",  # an amount of 0.00
    "DF_DEMO01_20260105_124.txt": "4002",  # header batch number differs from the name
    "DF_DEMO01_20261340_125.txt": "4008",  # month 13 in the name
    "DF_DEMO01_20260105_126.txt": "4002",  # | inside a name: one field too many
    "DF_DEMO01_20260105_127.txt": "4002",  # CRLF and LF mixed
}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[IntakeRig]:
    r = IntakeRig(tmp_path / "state")
    yield r
    r.close()


def _rejection_header(rig: IntakeRig, name: str) -> dict[str, object]:
    """The header of the rejection file the platform finds for ``name``."""
    [row] = [r for r in rig.bank.files.rejections(APP) if r["file_name"] == name]
    assert row["reject_file"] == rejection_file_name(name, row_time(row["at"]))
    path = rig.bank.outbox.jail(APP) / "download" / "returns" / row["reject_file"]
    listing = [p.name for p in path.parent.iterdir()]
    assert path.exists(), f"no rejection file {row['reject_file']}; the platform sees {listing}"
    with path.open("rb") as fh:
        return FileReader(load_layout("rejection"), fh).header


def row_time(iso: str) -> datetime:
    return datetime.fromisoformat(iso).replace(tzinfo=None)


# -- the corpus ----------------------------------------------------------------------------


def test_the_corpus_and_its_readme_list_the_same_files_and_codes() -> None:
    files = {p.name for p in CORPUS.iterdir() if p.name != "README.md"}
    assert files == set(EXPECTED)
    rows = re.findall(r"^\| `([^`]+)` \| (4\d{3}) \|", (CORPUS / "README.md").read_text("utf-8"), re.M)
    assert dict(rows) == EXPECTED
    assert len(EXPECTED) >= 15


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_malformed_file_gets_its_code_and_moves_no_money(rig: IntakeRig, name: str) -> None:
    # The rig's clock starts at the profile's 2026-01-05 09:00, the corpus's business date.
    assert rig.day == date(2026, 1, 5)
    outcome = rig.feed(name, (CORPUS / name).read_bytes(), name)
    assert outcome == f"rejected:{EXPECTED[name]}", rig.problems
    header = _rejection_header(rig, name)
    assert (header["code"], header["original_file_name"]) == (EXPECTED[name], name)
    # feed() compared balances, postings, batches and records before and after an hour.
    assert not rig.problems


# -- the property ----------------------------------------------------------------------------


def test_fuzzed_files_are_accepted_or_refused_with_a_code_and_refusals_move_nothing(
        rig: IntakeRig) -> None:
    # No shrinking: a failing example is reported whole (rig.problems), and shrinking against
    # a bank that a bad file wedged would take minutes.
    @settings(max_examples=100, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.data())
    def feed_one(data: st.DataObject) -> None:
        f = data.draw(request_files(day=rig.day, batch_no=rig.batch_no(), accounts=rig.accounts))
        label, mutated = data.draw(st.one_of(st.just(("unchanged", f.data)), mutations(f.data)))
        name = data.draw(file_names(f.name))
        outcome = rig.feed(name, mutated, label)
        assert outcome == "accepted" or outcome.removeprefix("rejected:") in FILE_CODES, rig.problems[-1:]
        if label == "unchanged" and name == f.name:
            assert outcome == "accepted", rig.bank.files.rejections()[-1:]

    feed_one()
    assert rig.outcomes["accepted"] > 0 and any(k.startswith("rejected:") for k in rig.outcomes)


# -- what the rejection file cannot hold --------------------------------------------------------


# Names an SFTP client can give a batch file (the jail refuses only control characters and
# names over 255 bytes); the tab arrives through the control API's hand-over.
HOSTILE_NAMES = ["DF_DEMO01_20260105_7|x.txt", "😀.txt", "Þórunn.txt", "a\tb.txt"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_upload_name_is_refused_and_the_next_file_still_answered(
        rig: IntakeRig, name: str) -> None:
    assert rig.feed(name, b"H|1|20260105|DEMO01|DF|0|0.00|98010078801000001|\r\n") == "rejected:4008", \
        rig.problems
    follow_up = "DF_DEMO01_20260105_8.txt"
    assert rig.feed(follow_up, b"H|8|20260105|DEMO01|DF|0|0.00|98010078801000001|\r\n") == "accepted", \
        rig.problems


@pytest.mark.parametrize(("label", "data"), [
    # A header one field short: the reason names the separator ('|').
    ("separator in the reason", b"H|9|20260105|DEMO01|DF|0|98010078801000001|\r\n"),
    # A 300-character memo: the reason quotes it, past the reason field's 256 bytes.
    ("reason over 256 bytes", b"H|9|20260105|DEMO01|DF|1|1.00|98010078801000001|\r\n"
                              b"D|1|S1|6231880000000100016|A|1.00|" + b"9" * 300 + b"|\r\n"),
])
def test_any_refusal_reason_fits_the_rejection_file(rig: IntakeRig, label: str, data: bytes) -> None:
    name = "DF_DEMO01_20260105_9.txt"
    outcome = rig.feed(name, data, label)
    assert outcome.startswith("rejected:"), rig.problems
    assert _rejection_header(rig, name)["code"] == outcome.removeprefix("rejected:")
    assert rig.feed("DF_DEMO01_20260105_10.txt",
                    b"H|10|20260105|DEMO01|DF|0|0.00|98010078801000001|\r\n") == "accepted", rig.problems
