"""Steps that move the bank's virtual clock (never a sleep: due jobs run in order)."""

from __future__ import annotations

from pytest_bdd import given, when

from features.steps.context import ScenarioContext
from features.steps.types import Moment, phrase


@given(phrase("the bank clock advances by {span:Duration}"))
@when(phrase("the bank clock advances by {span:Duration}"))
@given(phrase("银行时钟前进{span:Duration}"))
@when(phrase("银行时钟前进{span:Duration}"))
def advance_by(scenario_context: ScenarioContext, span: str) -> None:
    scenario_context.control.advance(by=span)


@given(phrase("the bank clock advances to {at:Moment}"))
@when(phrase("the bank clock advances to {at:Moment}"))
@given(phrase("银行时钟前进到{at:Moment}"))
@when(phrase("银行时钟前进到{at:Moment}"))
def advance_to(scenario_context: ScenarioContext, at: Moment) -> None:
    """``T+1 10:00`` is 10:00 on the day after the scenario's first business date."""
    target = at.resolve(scenario_context.business_date)
    scenario_context.control.advance(to=target.isoformat(timespec="minutes"))
