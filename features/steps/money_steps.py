"""Steps about balances, refunds to the bound card and the ledger's invariants."""

from __future__ import annotations

import httpx
from pytest_bdd import given, then, when

from contracts.money import format_fen, parse_yuan
from features.steps.context import ScenarioContext
from features.steps.types import phrase


@when(phrase("the platform refunds {amount:Money} from {name:Person}'s account"),
      target_fixture="refund_answer")
@when(phrase("平台为{name:Person}退款{amount:Money}元"), target_fixture="refund_answer")
def refund(scenario_context: ScenarioContext, name: str, amount: int) -> httpx.Response:
    """The bank API's refund: from the Class III account out to the user's bound card."""
    account_no = scenario_context.person(name).account
    return scenario_context.api.refund(scenario_context.next_serial("RFD"), account_no,
                                       format_fen(amount), "用户申请退款")


@then(phrase("the refund is paid to {name:Person}'s bound card"))
@then(phrase("退款成功，资金退回{name:Person}的绑定卡"))
def refund_paid(scenario_context: ScenarioContext, refund_answer: httpx.Response, name: str) -> None:
    assert refund_answer.status_code == 200, refund_answer.text
    assert refund_answer.json()["code"] == "0000", refund_answer.text
    data = refund_answer.json()["data"]
    assert (data["account_no"], data["status"]) == (scenario_context.person(name).account, "PAID"), data


@then(phrase("the refund is refused with code {code:Code}"))
@then(phrase("退款被拒绝，返回码为{code:Code}"))
def refund_refused(refund_answer: httpx.Response, code: str) -> None:
    assert refund_answer.status_code != 200, refund_answer.text
    assert refund_answer.json()["code"] == code, refund_answer.text


@then(phrase("{name:Person}'s Class III balance is {amount:Money}"))
@then(phrase("{name:Person}的三类账户余额为{amount:Money}元"))
def class_iii_balance(scenario_context: ScenarioContext, name: str, amount: int) -> None:
    """As the platform reads it: the bank API's account query."""
    got = parse_yuan(scenario_context.account_view(name)["balance"])
    assert got == amount, f"{name} holds {format_fen(got)}, expected {format_fen(amount)}"


@then(phrase("{name:Person} has {amount:Money} of today's outflow limit left"))
@then(phrase("{name:Person}今日剩余出金额度为{amount:Money}元"))
def outflow_left(scenario_context: ScenarioContext, name: str, amount: int) -> None:
    limits = scenario_context.account_view(name)["limits"]
    assert parse_yuan(limits["daily_outflow_remaining"]) == amount, limits


@then(phrase("the ledger invariants hold"))
@then(phrase("账务不变式成立"))
def invariants_hold(scenario_context: ScenarioContext) -> None:
    """Money conserved, balances equal their postings, caps and limits respected."""
    result = scenario_context.control.invariants()
    assert result["ok"] is True, result["violations"]


@given(phrase("the bank's Class III daily outflow limit is {amount:Money}"))
@given(phrase("银行三类账户每日出金限额为{amount:Money}元"))
def daily_outflow_limit(scenario_context: ScenarioContext, amount: int) -> None:
    """Bank policy in the profile (PBOC: 2,000.00); the reset before each scenario restores it."""
    scenario_context.control.patch_profile({"bank": {"class_iii": {"daily_outflow": format_fen(amount)}}})
