"""Record outcome rules and file-fault rules: validation at load, first match, seeded rates."""

from __future__ import annotations

import pytest

from simulator.config import ProfileError
from simulator.domain.outcomes import RecordFacts, decide_file_fault, decide_record
from tests.conftest import make_profile


def facts(amount: int, *, serial: str = "S1", name: str = "张三", position: int = 1,
          kind: str = "DF") -> RecordFacts:
    return RecordFacts(kind, "demo-platform", "B1", serial, position, "6231880000000000001", name, amount)


def test_default_magic_amounts_follow_the_code() -> None:
    settings = make_profile().batches
    for cents, code in (("08", "3008"), ("17", "3017"), ("28", "3028"), ("57", "3057")):
        forced = decide_record(settings, 1, facts(int(cents)))
        assert forced is not None and forced.code == code
    assert decide_record(settings, 1, facts(117)) is None  # 1.17: a real amount, not magic


def test_first_match_wins_and_not_excludes() -> None:
    settings = make_profile({"batches": {"rules": [
        {"name": "vip spared", "match": {"account_name": "王.*"}, "not": {"serial": "VIP.*"},
         "action": {"fail": "3017", "reason": "冻结演示"}},
        {"name": "third record", "match": {"position": 3, "kind": "DF"}, "action": {"fail": "3009"}},
    ]}}).batches
    first = decide_record(settings, 1, facts(500, name="王五"))
    assert first is not None and (first.code, first.by, first.reason) == ("3017", "vip spared", "冻结演示")
    assert decide_record(settings, 1, facts(500, name="王五", serial="VIP1")) is None
    third = decide_record(settings, 1, facts(500, position=3))
    assert third is not None and third.by == "third record"
    assert decide_record(settings, 1, facts(500, position=3, kind="DK")) is None


def test_rates_are_seeded_per_record() -> None:
    settings = make_profile({"batches": {"rules": [], "rates": {"3028": 0.25, "3017": 0.05}}}).batches
    outcomes = [decide_record(settings, 9, facts(100, serial=f"S{i}")) for i in range(4000)]
    again = [decide_record(settings, 9, facts(100, serial=f"S{i}")) for i in range(4000)]
    assert outcomes == again
    codes = [o.code for o in outcomes if o is not None]
    assert 850 < codes.count("3028") < 1150 and 120 < codes.count("3017") < 290


@pytest.mark.parametrize(("patch", "where"), [
    ({"rules": [{"match": {}, "action": {"fail": "2003"}}]}, "batches.rules.0.action.fail"),
    ({"rules": [{"match": {"serial": "("}, "action": {"fail": "3017"}}]}, "batches.rules.0.match.serial"),
    ({"rules": [{"match": {"amount_cents": "7"}, "action": {"fail": "3017"}}]},
     "batches.rules.0.match.amount_cents"),
    ({"rates": {"3028": 0.7, "3017": 0.6}}, "batches.rates"),
    ({"rates": {"4001": 0.1}}, "batches.rates"),
    ({"processing_delay": "soon"}, "batches.processing_delay"),
])
def test_bad_rules_are_refused_at_load_with_their_location(patch: dict[str, object], where: str) -> None:
    with pytest.raises(ProfileError) as info:
        make_profile({"batches": patch})
    assert f"  {where}:" in str(info.value)


def test_file_fault_rules_then_rates() -> None:
    settings = make_profile({"batches": {"file_faults": [
        {"name": "never for 5", "match": {"batch_no": "5"}, "action": {"never": True}}],
        "file_fault_rates": {"twice": 1.0}}}).batches
    ruled = decide_file_fault(settings, 1, "demo-platform", "DF", "5")
    assert ruled is not None and ruled[0].never and ruled[1] == "never for 5"
    rated = decide_file_fault(settings, 1, "demo-platform", "DF", "6")
    assert rated is not None and rated[0].twice and rated[1] == "rate twice"
    assert decide_file_fault(make_profile({"batches": {"file_faults": []}}).batches, 1,
                             "demo-platform", "DF", "6") is None
