"""HTTP fault decisions: rules first, then seeded rates, deterministic per request."""

from __future__ import annotations

from typing import Any

import pytest

from simulator.config import HttpFaults, ProfileError
from simulator.domain.faults import RequestFacts, attempt_matters, decide, draw
from tests.conftest import make_profile


def facts(serial: str = "S1", attempt: int = 1, operation: str = "open_account",
          body: dict[str, Any] | None = None) -> RequestFacts:
    return RequestFacts(operation, "POST", "/api/v1/accounts/open", "demo-platform", serial,
                        body or {}, attempt)


def faults(data: dict[str, Any]) -> HttpFaults:
    return make_profile({"http_faults": data}).http_faults


def test_default_profile_magic_serials_fail_first_attempt_only() -> None:
    f = make_profile().http_faults
    assert decide(f, 1, facts("X-BUSY-1")).error == "3028"
    assert decide(f, 1, facts("X-BUSY-1", attempt=2)).error is None
    assert decide(f, 1, facts("X-LOST-1")).lose_response
    assert decide(f, 1, facts("X-SLOW-1")).hold_ms == 3000
    assert not decide(f, 1, facts("ORDINARY")).is_fault


def test_first_matching_rule_wins_and_not_excludes() -> None:
    f = faults({"rules": [
        {"name": "refunds for 张三", "match": {"operation": "refund", "body": {"name": "张三"}},
         "not": {"serial": "VIP.*"}, "action": {"error": "3017"}},
        {"name": "all refunds", "match": {"operation": ["refund"]}, "action": {"error": "3028"}},
    ]})
    assert decide(f, 1, facts(operation="refund", body={"name": "张三"})).rule == "refunds for 张三"
    assert decide(f, 1, facts("VIP1", operation="refund", body={"name": "张三"})).error == "3028"
    assert decide(f, 1, facts(operation="open_account")).error is None


def test_rates_are_seeded_and_near_their_value() -> None:
    f = faults({"rates": {"error": {"rate": 0.2, "code": "3028"}}})
    outcomes = [decide(f, 42, facts(f"S{i}")).error for i in range(2000)]
    again = [decide(f, 42, facts(f"S{i}")).error for i in range(2000)]
    other_seed = [decide(f, 43, facts(f"S{i}")).error for i in range(2000)]
    assert outcomes == again
    assert outcomes != other_seed
    assert 300 < outcomes.count("3028") < 500


def test_latency_distributions() -> None:
    assert decide(faults({"latency": {"distribution": "fixed", "ms": 7}}), 1, facts()).latency_ms == 7
    uniform = faults({"latency": {"distribution": "uniform", "min_ms": 10, "max_ms": 20}})
    values = [decide(uniform, 1, facts(f"S{i}")).latency_ms for i in range(200)]
    assert all(10 <= v <= 20 for v in values) and len(set(values)) > 100
    lognormal = faults({"latency": {"distribution": "lognormal", "median_ms": 50, "sigma": 0.5}})
    draws = sorted(decide(lognormal, 1, facts(f"S{i}")).latency_ms for i in range(1001))
    assert 40 < draws[500] < 60


def test_draw_is_uniform_in_unit_interval() -> None:
    values = [draw(9, "k", i) for i in range(5000)]
    assert all(0 <= v < 1 for v in values)
    assert 0.45 < sum(values) / len(values) < 0.55


def test_bad_rules_are_refused_at_load_with_locations() -> None:
    with pytest.raises(ProfileError) as info:
        faults({"rules": [{"match": {"operation": "nope", "serial": "("},
                           "action": {"error": "0000"}}]})
    text = str(info.value)
    assert "http_faults.rules.0.match.operation" in text
    assert "http_faults.rules.0.match.serial" in text
    assert "http_faults.rules.0.action.error" in text


def test_attempts_are_counted_only_where_they_can_change_a_decision() -> None:
    default = make_profile().http_faults
    assert attempt_matters(default, facts("X-BUSY-1"))        # a magic serial: attempt 1 fails
    assert not attempt_matters(default, facts("ORDINARY-1"))  # no rule or rate can tell attempts apart
    # Whenever it is not counted, every attempt is decided alike.
    assert decide(default, 1, facts("ORDINARY-1")) == decide(default, 1, facts("ORDINARY-1", attempt=7))
    assert attempt_matters(faults({"rates": {"error": {"rate": 0.1, "code": "3028"}}}), facts("ORDINARY-1"))
    assert attempt_matters(faults({"latency": {"distribution": "uniform", "min_ms": 1, "max_ms": 5}}),
                           facts("ORDINARY-1"))
    assert not attempt_matters(faults({"latency": {"distribution": "fixed", "ms": 5}}), facts("ORDINARY-1"))
    on_refunds = faults({"rules": [{"match": {"operation": ["refund"], "attempt": 2},
                                    "action": {"error": "3028"}}]})
    assert attempt_matters(on_refunds, facts("R-1", operation="refund"))
    assert not attempt_matters(on_refunds, facts("R-1", operation="open_account"))
