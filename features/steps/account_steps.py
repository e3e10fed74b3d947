"""Steps about users and their Class III accounts: opening, ID-card images, account state.

Each step function carries its English phrasing and, as a second decorator, its Chinese
one; both run the same code.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pytest_bdd import given, then, when

from features.steps.context import UNKNOWN_ACCOUNT, ScenarioContext
from features.steps.types import phrase
from simulator.testing.bank_api import IMAGES

# Image bytes with real signatures; the bank reads a file under images.min_bytes (1024)
# as unreadable.
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8
UNREADABLE_JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 100


def _code(answer: httpx.Response) -> str:
    return str(answer.json().get("code"))


# -- Given: users and accounts ------------------------------------------------------------------


@given(phrase("a user {name:Person} with an active Class III account"))
@given(phrase("用户{name:Person}已开立正常状态的三类账户"))
def active_account(scenario_context: ScenarioContext, name: str) -> None:
    """Opened through the bank API; ID-card images approved through the control API."""
    scenario_context.open_active(name)


@given(phrase("a user {name:Person} with an active Class III account and {amount:Money} CNY"))
@given(phrase("用户{name:Person}已开立正常状态的三类账户，余额{amount:Money}元"))
def active_account_with_balance(scenario_context: ScenarioContext, name: str, amount: int) -> None:
    person = scenario_context.open_active(name)
    if amount:  # 0.00: nothing to deposit (the bank refuses an empty deposit)
        scenario_context.deposit(person.account, amount)


@given(phrase("a user {name:Person} who applied for an account but sent no ID-card images"))
@given(phrase("用户{name:Person}已申请开户但未上传身份证影像"))
def applied_without_images(scenario_context: ScenarioContext, name: str) -> None:
    person = scenario_context.new_person(name)
    answer = scenario_context.apply(person)
    assert answer.status_code == 200, answer.text


@given(phrase("a user {name:Person} who has not applied for an account yet"))
@given(phrase("用户{name:Person}尚未申请开户"))
def new_user(scenario_context: ScenarioContext, name: str) -> None:
    scenario_context.new_person(name)


@given(phrase("the platform has a wrong account number on file for {name:Person}"))
@given(phrase("平台记录的{name:Person}的账号有误"))
def wrong_account_number(scenario_context: ScenarioContext, name: str) -> None:
    """The platform's records point at a well-formed account number the bank never opened."""
    scenario_context.new_person(name).account_no = UNKNOWN_ACCOUNT


@given(phrase("{name:Person} already holds {count:d} Class III accounts"))
@given(phrase("{name:Person}已持有{count:d}个三类账户"))
def already_holds(scenario_context: ScenarioContext, name: str, count: int) -> None:
    person = scenario_context.new_person(name)
    for _ in range(count):
        answer = scenario_context.apply(person)
        assert answer.status_code == 200, answer.text


@given(phrase("{name:Person}'s account is frozen"))
@given(phrase("{name:Person}的账户已被冻结"))
def frozen(scenario_context: ScenarioContext, name: str) -> None:
    """Frozen by the platform through the bank API (as its risk control would)."""
    person = scenario_context.person(name)
    answer = scenario_context.api.freeze(person.account, scenario_context.next_serial("FRZ"), "风控冻结")
    assert answer.status_code == 200, answer.text


@given(phrase("{name:Person}'s account is closed"))
@given(phrase("{name:Person}的账户已销户"))
def closed(scenario_context: ScenarioContext, name: str) -> None:
    person = scenario_context.person(name)
    answer = scenario_context.api.close_account(person.account, scenario_context.next_serial("CLOSE"))
    assert answer.status_code == 200, answer.text


@given(phrase("{name:Person} has no withholding agreement"))
@given(phrase("{name:Person}未签署代扣协议"))
def no_agreement(scenario_context: ScenarioContext, name: str) -> None:
    scenario_context.control.set_agreement(scenario_context.person(name).account, False)


@given(phrase("the platform has {name:Person}'s account under the name {other:Person}"))
@given(phrase("平台记录的{name:Person}的户名为{other:Person}"))
def name_on_file(scenario_context: ScenarioContext, name: str, other: str) -> None:
    scenario_context.person(name).name_on_file = other


# -- When: opening -------------------------------------------------------------------------------


@when(phrase("{name:Person} applies for a Class III account"), target_fixture="opening_answer")
@when(phrase("{name:Person}申请开立三类账户"), target_fixture="opening_answer")
def applies(scenario_context: ScenarioContext, name: str) -> httpx.Response:
    return scenario_context.apply(scenario_context.new_person(name))


@when(phrase('{name:Person} applies for a Class III account with {field:Element} "{value}"'),
      target_fixture="opening_answer")
@when(phrase('{name:Person}申请开立三类账户，{field:Element}为"{value}"'), target_fixture="opening_answer")
def applies_with(scenario_context: ScenarioContext, name: str, field: str, value: str) -> httpx.Response:
    """One of the five elements replaced by ``value``; the others stay valid."""
    person = scenario_context.new_person(name)
    return scenario_context.apply(person, identity={**person.identity, field: value})


@when(phrase("the platform opens an account for {name:Person} with serial {serial:Serial} "
             "and the answer is lost"))
@when(phrase("平台以流水号{serial:Serial}为{name:Person}开户，应答丢失"))
def opening_lost(scenario_context: ScenarioContext, name: str, serial: str) -> None:
    person = scenario_context.new_person(name)
    with pytest.raises(httpx.TransportError):
        scenario_context.api.open_account(serial, person.identity)


@when(phrase("the platform opens an account for {name:Person} with serial {serial:Serial} "
             "and gives up after {timeout:Seconds} seconds"))
@when(phrase("平台以流水号{serial:Serial}为{name:Person}开户，{timeout:Seconds}秒后超时放弃"))
def opening_timed_out(scenario_context: ScenarioContext, name: str, serial: str, timeout: float) -> None:
    person = scenario_context.new_person(name)
    with pytest.raises(httpx.TimeoutException):
        scenario_context.api.open_account(serial, person.identity, timeout=timeout)


@when(phrase("the platform queries the opening by serial {serial:Serial}"), target_fixture="opening_answer")
@when(phrase("平台按流水号{serial:Serial}查询开户结果"), target_fixture="opening_answer")
def query_opening(scenario_context: ScenarioContext, serial: str) -> httpx.Response:
    answer = scenario_context.api.query_opening(serial)
    if answer.status_code == 200:
        account_no = answer.json()["data"]["account_no"]
        for person in scenario_context.people.values():
            if person.account_no is None and person.name == answer.json()["data"]["name"]:
                person.account_no, person.opening_serial = account_no, serial
    return answer


@when(phrase("the platform sends the opening for {name:Person} again with serial {serial:Serial}"),
      target_fixture="opening_answer")
@when(phrase("平台以流水号{serial:Serial}再次发送{name:Person}的开户请求"), target_fixture="opening_answer")
def opening_again(scenario_context: ScenarioContext, name: str, serial: str) -> httpx.Response:
    person = scenario_context.person(name)
    return scenario_context.api.open_account(serial, person.identity)


# -- When: ID-card images ----------------------------------------------------------------------


def _upload_images(scenario_context: ScenarioContext, name: str, front: bytes, back: bytes | None) -> None:
    account_no = scenario_context.person(name).account
    scenario_context.sftp.write(f"{IMAGES}/{account_no}_front.jpg", front)
    if back is not None:
        scenario_context.sftp.write(f"{IMAGES}/{account_no}_back.png", back)


@when(phrase("{name:Person}'s ID-card images are uploaded"))
@when(phrase("平台上传了{name:Person}的身份证正反面影像"))
def images_uploaded(scenario_context: ScenarioContext, name: str) -> None:
    _upload_images(scenario_context, name, JPEG, PNG)


@when(phrase("only the front of {name:Person}'s ID card is uploaded"))
@when(phrase("平台只上传了{name:Person}的身份证正面影像"))
def front_only(scenario_context: ScenarioContext, name: str) -> None:
    _upload_images(scenario_context, name, JPEG, None)


@when(phrase("{name:Person}'s ID-card images are uploaded unreadable"))
@when(phrase("平台上传的{name:Person}身份证影像无法识别"))
def images_unreadable(scenario_context: ScenarioContext, name: str) -> None:
    _upload_images(scenario_context, name, UNREADABLE_JPEG, UNREADABLE_JPEG)


# -- Then ------------------------------------------------------------------------------------------


@then(phrase("the account is opened and waits for ID-card images"))
@then(phrase("账户开立成功，等待身份证影像"))
def opened_pending(opening_answer: httpx.Response) -> None:
    assert opening_answer.status_code == 200, opening_answer.text
    data = opening_answer.json()["data"]
    assert (data["status"], data["account_class"]) == ("PENDING_IMAGES", "III"), data


@then(phrase("the opening is refused with code {code:Code}"))
@then(phrase("开户被拒绝，返回码为{code:Code}"))
def opening_refused(opening_answer: httpx.Response, code: str) -> None:
    assert _code(opening_answer) == code, opening_answer.text
    assert opening_answer.status_code != 200, opening_answer.text


@then(phrase("the answer names the account opened with serial {serial:Serial}"))
@then(phrase("应答中的账户即流水号{serial:Serial}开立的账户"))
def answer_names_account(scenario_context: ScenarioContext, opening_answer: httpx.Response,
                         serial: str) -> None:
    assert opening_answer.status_code == 200, opening_answer.text
    original = scenario_context.api.query_opening(serial)
    assert original.status_code == 200, original.text
    assert opening_answer.json()["data"]["account_no"] == original.json()["data"]["account_no"]


@then(phrase("{name:Person} holds {count:d} Class III account"))
@then(phrase("{name:Person} holds {count:d} Class III accounts"))
@then(phrase("{name:Person}名下有{count:d}个三类账户"))
def holds_accounts(scenario_context: ScenarioContext, name: str, count: int) -> None:
    id_number = scenario_context.person(name).identity["id_number"]
    held = [a for a in scenario_context.control.accounts(kind="CLASS_III", limit=10_000)
            if a["status"] != "CLOSED"
            and scenario_context.control.account(a["account_no"])["id_number"] == id_number]
    assert len(held) == count, [a["account_no"] for a in held]


@then(phrase("{name:Person}'s account is {state:Status}"))
@then(phrase("{name:Person}的账户状态为{state:Status}"))
def account_status(scenario_context: ScenarioContext, name: str, state: str) -> None:
    view: dict[str, Any] = scenario_context.account_view(name)
    assert view["status"] == state, view


@then(phrase("{name:Person}'s ID-card images are rejected"))
@then(phrase("{name:Person}的身份证影像审核不通过"))
def images_rejected(scenario_context: ScenarioContext, name: str) -> None:
    view = scenario_context.account_view(name)
    assert (view["status"], view["image_status"]) == ("PENDING_IMAGES", "REJECTED"), view
    assert view["image_reason"], view
