"""Platform steps: balance checks, money moved behind the platform's back, several days.

The balance check is the platform client's (``check_balances``): per user the journal
identity, and the bank's Class III balance against the platform's cash plus consumption
not yet withheld. "The books agree" adds the batches (every original record succeeded,
nothing waiting) and the platform's two bank accounts against what the platform expects.
"""

from __future__ import annotations

import re

from faker import Faker
from pytest_bdd import given, then, when

from contracts.money import format_fen, parse_yuan
from features.steps.platform_days import PROFILES, run_days
from features.steps.platform_world import PlatformWorld, platform_phrase
from features.steps.types import NAME_PATTERN
from platform_client.checks import check_balances
from platform_client.payouts import original_progress

_PROFILE_NAMES = {"default": "default", "默认": "default", "faults-heavy": "faults-heavy",
                  "多故障": "faults-heavy"}


# -- Given ------------------------------------------------------------------------------------------


@given(platform_phrase("the bank runs the {profile} profile with seed {seed:d}"))
@given(platform_phrase("银行采用{profile}配置，随机种子为{seed:d}"))
def bank_profile(platform_world: PlatformWorld, profile: str, seed: int) -> None:
    """``default`` or ``faults-heavy`` (:data:`features.steps.platform_days.PROFILES`), and the seed."""
    assert profile in _PROFILE_NAMES, f"unknown profile {profile!r}: one of {sorted(_PROFILE_NAMES)}"
    platform_world.control.patch_profile({**PROFILES[_PROFILE_NAMES[profile]], "seed": seed})
    platform_world.results["seed"] = seed


@given(platform_phrase("{count:d} platform users with active Class III accounts"))
@given(platform_phrase("{count:d}名平台用户，三类账户已开立且状态正常"))
def many_platform_users(platform_world: PlatformWorld, count: int) -> None:
    """Faker's Chinese names (seeded by the scenario's seed), each enrolled by the platform."""
    fake = Faker("zh_CN")
    fake.seed_instance(platform_world.results.get("seed", platform_world.scenario.seed))
    names: list[str] = []
    for _ in range(count * 20):  # bounded: collisions among faker's names are rare
        name = fake.name()
        if name not in names and re.fullmatch(NAME_PATTERN, name):
            names.append(name)
        if len(names) == count:
            break
    assert len(names) == count, f"only {len(names)} distinct names"
    for name in names:
        platform_world.enrol(name, approved=True)


# -- When -------------------------------------------------------------------------------------------


@when(platform_phrase("the bank credits {amount:Money} to {name:Person}'s account behind the "
                      "platform's back"))
@when(platform_phrase("银行绕过平台向{name:Person}的账户存入{amount:Money}元"))
def deposit_behind_back(platform_world: PlatformWorld, name: str, amount: int) -> None:
    """A control-API deposit: money from outside the bank the platform knows nothing of."""
    person = platform_world.scenario.person(name)
    platform_world.control.deposit(person.account, format_fen(amount), "未经平台的入账")


@when(platform_phrase("{name:Person} is refunded {amount:Money} by the bank directly, behind the "
                      "platform's back"))
@when(platform_phrase("银行绕过平台直接为{name:Person}退款{amount:Money}元"))
def refund_behind_back(platform_world: PlatformWorld, name: str, amount: int) -> None:
    """A refund through the bank API under a serial the platform's store never recorded."""
    scenario = platform_world.scenario
    answer = scenario.api.refund(scenario.next_serial("RFD-OUTSIDE"), scenario.person(name).account,
                                 format_fen(amount), "未经平台的退款")
    assert answer.status_code == 200, answer.text


@when(platform_phrase("the platform checks the balances"))
@when(platform_phrase("平台核对余额"))
def checks(platform_world: PlatformWorld) -> None:
    platform_world.results["check"] = check_balances(platform_world.ctx)


@when(platform_phrase("{days:d} business days of top-ups, rides and T+1 settlement go by"))
@when(platform_phrase("经过{days:d}个营业日的充值、骑行消费和T+1结算"))
def days_go_by(platform_world: PlatformWorld, days: int) -> None:
    seed = int(platform_world.results.get("seed", platform_world.scenario.seed))
    run = run_days(platform_world, days, seed)
    platform_world.results["days"] = run
    assert run.topups > 0 and run.rides > 0, run  # a run without money moving proves nothing


# -- Then -------------------------------------------------------------------------------------------


@then(platform_phrase("the balance check finds no difference"))
@then(platform_phrase("余额核对无差异"))
def check_clean(platform_world: PlatformWorld) -> None:
    result = platform_world.results["check"]
    assert result["ok"] and result["differences"] == [], result["differences"]
    assert [u for u in result["users"] if u["bank_balance"] is not None], result["users"]


@then(platform_phrase("the balance check reports {name:Person}: the bank holds {bank:Money}, the "
                      "platform expects {expected:Money}"))
@then(platform_phrase("余额核对报告{name:Person}：银行余额{bank:Money}元，平台应有{expected:Money}元"))
def check_reports(platform_world: PlatformWorld, name: str, bank: int, expected: int) -> None:
    """Exactly one difference, naming the user's account with both figures."""
    result = platform_world.results["check"]
    account = platform_world.scenario.person(name).account
    assert not result["ok"], result
    [difference] = result["differences"]
    assert account in difference and format_fen(bank) in difference and format_fen(expected) in difference, \
        difference
    [user] = [u for u in result["users"] if u["account_no"] == account]
    assert (user["bank_balance"], user["bank_expected"]) == (bank, expected), user


@then(platform_phrase("the bank's and the platform's books agree"))
@then(platform_phrase("银行与平台账务一致"))
def books_agree(platform_world: PlatformWorld) -> None:
    """Per user, every batch, and the 98 and settlement accounts against the platform's figures."""
    world = platform_world
    result = check_balances(world.ctx)
    assert result["ok"], result["differences"]
    waiting = world.waiting_batches()
    assert waiting == 0, f"{waiting} batches without a reply"
    for row in world.ctx.store.all("SELECT batch_no FROM batches WHERE batch_no NOT IN "
                                   "(SELECT batch_no FROM batch_records WHERE original_id IS NOT NULL)"):
        progress = original_progress(world.ctx, int(row["batch_no"]))
        assert progress["outstanding"] == 0, (row["batch_no"], progress)
    # The 98 account: the platform's own deposits (its reserve) plus what it expects.
    supervision = world.ctx.config.supervision_account
    postings = world.control.account(supervision)["postings"]
    assert len(postings) < 200, "the control API shows the last 200 postings: the reserve may be cut off"
    reserve = sum(int(p["amount_fen"]) for p in postings if p["kind"] == "deposit")
    bank_98 = parse_yuan(world.control.account(supervision)["balance"])
    net = result["supervision"]["net_expected"]
    assert bank_98 == reserve + net, (f"98 account {format_fen(bank_98)} != reserve {format_fen(reserve)} "
                                      f"+ settlements less disbursements {format_fen(net)}")
    withheld = int(world.ctx.store.scalar(
        "SELECT coalesce(sum(amount), 0) FROM batch_records WHERE kind = 'DK' AND state = 'SUCCESS'"))
    consumed = int(world.ctx.store.scalar("SELECT coalesce(sum(amount), 0) FROM consumptions"))
    settlement = parse_yuan(world.control.account(world.ctx.config.settlement_account)["balance"])
    assert settlement == withheld == consumed, (f"settlement account {format_fen(settlement)}, withheld "
                                                f"{format_fen(withheld)}, consumed {format_fen(consumed)}")
