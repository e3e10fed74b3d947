"""Platform steps of T+1: reconciliation of WeChat's bill, disbursement, returns, re-submission,
withholding.

Everything goes through the platform client as an operator would run it: ``reconcile``,
``approve``, ``disburse``, ``poll-returns`` (every 20 minutes of bank time), ``resubmit``
and ``withhold``. Batch labels name the platform's own batches (``B2`` is the platform's
batch number 2: a fresh platform numbers its batches from 1).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from pytest_bdd import given, then, when

from contracts.money import format_fen
from contracts.wechat_bill import parse_bill
from features.steps.platform_world import APPROVER, PlatformWorld, platform_phrase
from platform_client.errors import StepRefused, WeChatError
from platform_client.payouts import disburse, original_progress, resubmit, withhold
from platform_client.spending import consume

# -- Given: the channel ---------------------------------------------------------------------------


@given(platform_phrase("WeChat closes its day at {wechat:TimeOfDay} while the platform counts days "
                       "from {platform:TimeOfDay}"))
@given(platform_phrase("微信支付在{wechat:TimeOfDay}日切，而平台按{platform:TimeOfDay}划分日期"))
def day_boundaries(platform_world: PlatformWorld, wechat: str, platform: str) -> None:
    """WeChat's ``wechat.cutover`` in the profile; the client's ``wechat_cutover`` setting.

    They should agree; when they do not, a late-evening payment lands on different days.
    """
    platform_world.control.patch_profile({"wechat": {"cutover": wechat}})
    ctx = platform_world.ctx
    ctx.config = ctx.config.model_copy(update={"wechat_cutover": platform})


# -- When: reconciliation ----------------------------------------------------------------------------


@given(platform_phrase("the platform reconciles WeChat's bill of {day:Day}"))
@when(platform_phrase("the platform reconciles WeChat's bill of {day:Day}"))
@given(platform_phrase("平台核对{day:Day}日的微信账单"))
@when(platform_phrase("平台核对{day:Day}日的微信账单"))
def reconciles(platform_world: PlatformWorld, day: str) -> None:
    """Downloads the ALL bill (from 09:00 the next day), matches it, credits dropped orders."""
    platform_world.reconcile(platform_world.day(day))


@given(platform_phrase("an operator approves the reconciliation of {day:Day}"))
@when(platform_phrase("an operator approves the reconciliation of {day:Day}"))
@given(platform_phrase("运营人员审核通过{day:Day}日的对账结果"))
@when(platform_phrase("运营人员审核通过{day:Day}日的对账结果"))
def approves(platform_world: PlatformWorld, day: str) -> None:
    platform_world.approve(platform_world.day(day))


@given(platform_phrase("the platform settles the top-ups of {day:Day} the next morning in batch "
                       "{label:Batch}"))
@when(platform_phrase("the platform settles the top-ups of {day:Day} the next morning in batch "
                      "{label:Batch}"))
@given(platform_phrase("平台于次日上午以批次{label:Batch}完成{day:Day}日充值的结算"))
@when(platform_phrase("平台于次日上午以批次{label:Batch}完成{day:Day}日充值的结算"))
def settles_next_morning(platform_world: PlatformWorld, day: str, label: str) -> None:
    """The operator's morning in one line: at 09:30 reconcile and approve; at 10:05 (after
    WeChat's settlement into the 98 account) disburse; poll every 20 minutes until answered."""
    world = platform_world
    t = world.day(day)
    next_day = t + timedelta(days=1)
    world.advance_to(next_day, "09:30")
    world.reconcile(t)
    world.approve(t)
    world.advance_to(next_day, "10:05")
    world.label(label, disburse(world.ctx, t.isoformat()))
    world.poll_until_answered()


@when(platform_phrase("WeChat refunds {amount:Money} of {name:Person}'s order of {order:Money}"))
@when(platform_phrase("微信支付退还{name:Person}{order:Money}元订单中的{amount:Money}元"))
def wechat_refunds(platform_world: PlatformWorld, amount: int, name: str, order: int) -> None:
    """A refund made on the merchant platform of WeChat, not through the platform's client."""
    out_trade_no = platform_world.order_of(name, order)
    platform_world.control.call("POST", f"/wechat/orders/{out_trade_no}/refund",
                                json={"amount": format_fen(amount)})


# -- When: batches -------------------------------------------------------------------------------------


@when(platform_phrase("the platform disburses the top-ups of {day:Day} as batch {label:Batch}"))
@when(platform_phrase("平台将{day:Day}日的充值作为代发批次{label:Batch}发出"))
def disburses(platform_world: PlatformWorld, day: str, label: str) -> None:
    """One DF record per reconciled top-up, uploaded by temporary name and renamed."""
    world = platform_world
    world.label(label, disburse(world.ctx, world.day(day).isoformat()))


@when(platform_phrase("the platform polls for return files every 20 minutes until every batch is answered"))
@when(platform_phrase("平台每20分钟轮询一次回盘文件，直到所有批次都有回盘"))
def polls(platform_world: PlatformWorld) -> None:
    platform_world.results["polls"] = platform_world.poll_until_answered()


@when(platform_phrase("the platform tries to re-submit the failed records"))
@when(platform_phrase("平台尝试重新提交失败的记录"))
def tries_resubmit(platform_world: PlatformWorld) -> None:
    platform_world.results["resubmit"] = resubmit(platform_world.ctx)


@when(platform_phrase("the platform re-submits the failed records as batch {label:Batch}"))
@when(platform_phrase("平台将失败的记录重新提交为批次{label:Batch}"))
def resubmits(platform_world: PlatformWorld, label: str) -> None:
    """Only records whose cause the bank's account view shows fixed go again."""
    result = resubmit(platform_world.ctx)
    assert len(result.batches) == 1, f"re-submission made batches {result.batches}, held {result.held}"
    platform_world.label(label, result.batches[0])


@when(platform_phrase("the bank freezes {name:Person}'s account for a risk review"))
@when(platform_phrase("银行因风控审查冻结了{name:Person}的账户"))
def bank_freezes(platform_world: PlatformWorld, name: str) -> None:
    """The bank's own freeze (control API), not one the platform asked for."""
    platform_world.control.freeze(platform_world.scenario.person(name).account, "风控审查")


@when(platform_phrase("the bank lifts the freeze on {name:Person}'s account"))
@when(platform_phrase("银行解除了{name:Person}账户的冻结"))
def bank_unfreezes(platform_world: PlatformWorld, name: str) -> None:
    platform_world.control.unfreeze(platform_world.scenario.person(name).account)


@given(platform_phrase("{name:Person} spends {amount:Money} on a ride"))
@when(platform_phrase("{name:Person} spends {amount:Money} on a ride"))
@given(platform_phrase("{name:Person}骑行消费{amount:Money}元"))
@when(platform_phrase("{name:Person}骑行消费{amount:Money}元"))
def spends(platform_world: PlatformWorld, name: str, amount: int) -> None:
    """Platform income from the user's cash; withheld at the bank by the next DK batch."""
    world = platform_world
    world.results["rides"] = world.results.get("rides", 0) + 1
    consume(world.ctx, world.user_id(name), f"RIDE-{world.results['rides']:04d}", amount, "骑行费")


@when(platform_phrase("the platform withholds the consumption of {day:Day}"))
@when(platform_phrase("平台对{day:Day}日的消费发起代扣"))
def withholds(platform_world: PlatformWorld, day: str) -> None:
    """Refused (recorded) while that day's top-ups are not disbursed and answered."""
    world = platform_world
    try:
        world.results["withhold"] = withhold(world.ctx, world.day(day).isoformat())
    except StepRefused as exc:
        world.results["withhold"] = exc


# -- Then: reconciliation ------------------------------------------------------------------------------


def _items(world: PlatformWorld, day: str) -> list[dict[str, Any]]:
    rows = world.ctx.store.all("SELECT * FROM recon_items WHERE bill_date = ? ORDER BY out_trade_no, kind",
                               (world.day(day).isoformat(),))
    return [dict(r) for r in rows]


@then(platform_phrase("the reconciliation of {day:Day} shows {name:Person}'s top-up of {amount:Money} "
                      "as {kind:ReconKind}, {status:ReconStatus}"))
@then(platform_phrase("{day:Day}日对账中{name:Person}充值{amount:Money}元的订单为{kind:ReconKind}，"
                      "{status:ReconStatus}"))
def recon_item(platform_world: PlatformWorld, day: str, name: str, amount: int, kind: str,
               status: str) -> None:
    out_trade_no = platform_world.order_of(name, amount)
    items = _items(platform_world, day)
    found = [(i["kind"], i["status"]) for i in items if i["out_trade_no"] == out_trade_no]
    assert (kind, status) in found, f"{out_trade_no} in the reconciliation of {day}: {found}"
    if kind == "DROPPED" and status == "RESOLVED":
        [item] = [i for i in _items(platform_world, day) if i["out_trade_no"] == out_trade_no]
        assert "credited" in item["resolution"], item  # the resolution is recorded, with why


@then(platform_phrase("the reconciliation of {day:Day} lists {name:Person}'s top-up of {amount:Money} as an "
                      "amount mismatch with WeChat's {charged:Money}, held for review"))
@then(platform_phrase("{day:Day}日对账中{name:Person}充值{amount:Money}元的订单与微信实收{charged:Money}元"
                      "金额不符，挂起待查"))
def recon_amount_mismatch(platform_world: PlatformWorld, day: str, name: str, amount: int,
                          charged: int) -> None:
    """One AMOUNT_MISMATCH item with both amounts, held, and counted as a difference of the run.

    ``amount`` is what the platform recorded (it names the order), ``charged`` what the
    bill says WeChat collected.
    """
    world = platform_world
    out_trade_no = world.order_of(name, amount)
    items = [i for i in _items(world, day) if i["out_trade_no"] == out_trade_no]
    got = [(i["kind"], i["platform_amount"], i["bill_amount"], i["status"]) for i in items]
    assert got == [("AMOUNT_MISMATCH", amount, charged, "HELD")], f"{out_trade_no} in the reconciliation " \
        f"of {day}: {items}"
    assert "amounts differ" in items[0]["resolution"], items[0]  # the reason is recorded for the reviewer
    run = world.ctx.store.one("SELECT state, differences FROM recon_runs WHERE bill_date = ?",
                              (world.day(day).isoformat(),))
    assert run is not None and run["state"] == "DONE" and run["differences"] >= 1, dict(run or {})


@then(platform_phrase("the reconciliation of {day:Day} finds no difference"))
@then(platform_phrase("{day:Day}日对账无差异"))
def recon_clean(platform_world: PlatformWorld, day: str) -> None:
    items = _items(platform_world, day)
    assert items and {i["kind"] for i in items} == {"MATCHED"}, items
    run = platform_world.ctx.store.one("SELECT * FROM recon_runs WHERE bill_date = ?",
                                       (platform_world.day(day).isoformat(),))
    assert run is not None and (run["state"], run["differences"]) == ("DONE", 0), dict(run or {})


@then(platform_phrase("WeChat's bill of {day:Day} lists {records:Entries}"))
@then(platform_phrase("{day:Day}日的微信账单列有{records:Entries}"))
def bill_lists(platform_world: PlatformWorld, day: str, records: list[tuple[str, int]]) -> None:
    """The paid orders of that WeChat day, as the downloaded bill has them (any order)."""
    world = platform_world
    bill = parse_bill(world.ctx.wechat.trade_bill(world.day(day).isoformat(), "ALL"))
    owners = {no: name for name, orders in world.orders.items() for no in orders}
    got = sorted((owners.get(r.out_trade_no, r.out_trade_no), r.settlement_total_fen) for r in bill.rows
                 if r.trade_state == "SUCCESS")
    assert got == sorted(records), f"bill of {day}: {got}"


@then(platform_phrase("WeChat's bill of {day:Day} lists no payment"))
@then(platform_phrase("{day:Day}日的微信账单没有支付记录"))
def bill_empty(platform_world: PlatformWorld, day: str) -> None:
    """No bill at all (NO_STATEMENT_EXIST: WeChat's answer for a day without trades) or none paid."""
    try:
        data = platform_world.ctx.wechat.trade_bill(platform_world.day(day).isoformat(), "ALL")
    except WeChatError as exc:
        assert exc.wechat_code == "NO_STATEMENT_EXIST", exc
        return
    bill = parse_bill(data)
    assert [r for r in bill.rows if r.trade_state == "SUCCESS"] == [], bill.rows


# -- Then: batches ---------------------------------------------------------------------------------------


@then(platform_phrase("the platform's batch {label:Batch} pays {records:Entries}"))
@then(platform_phrase("平台的批次{label:Batch}入账{records:Entries}"))
def batch_pays(platform_world: PlatformWorld, label: str, records: list[tuple[str, int]]) -> None:
    world = platform_world
    names = {uid: name for name, uid in world.user_ids.items()}
    rows = world.ctx.store.all("SELECT user_id, amount FROM batch_records WHERE batch_no = ? ORDER BY seq",
                               (world.batch_no(label),))
    got = sorted((names[r["user_id"]], r["amount"]) for r in rows)
    assert got == sorted(records), f"batch {label}: {got}"


@then(platform_phrase("the platform recorded {name:Person}'s record in batch {label:Batch} as failed "
                      "with code {code:Code}"))
@then(platform_phrase("平台记录批次{label:Batch}中{name:Person}的记录失败，返回码为{code:Code}"))
def platform_record_failed(platform_world: PlatformWorld, name: str, label: str, code: str) -> None:
    record = platform_world.record(name, label)
    assert (record["state"], record["code"]) == ("FAILED", code), dict(record)


@then(platform_phrase("the re-submission sends nothing and holds {name:Person}'s record"))
@then(platform_phrase("重新提交没有发出批次，{name:Person}的记录暂缓"))
def resubmission_held(platform_world: PlatformWorld, name: str) -> None:
    """The cause is not fixed yet (the bank's account view says so): nothing goes again."""
    result = platform_world.results["resubmit"]
    serials = {r["serial"] for r in platform_world.ctx.store.all(
        "SELECT serial FROM batch_records WHERE user_id = ? AND state = 'FAILED'",
        (platform_world.user_id(name),))}
    assert result.batches == [] and set(result.held) == serials and serials, (result, serials)


@then(platform_phrase("every record of batch {label:Batch} has succeeded"))
@then(platform_phrase("批次{label:Batch}的每条记录最终都已成功"))
def originals_succeeded(platform_world: PlatformWorld, label: str) -> None:
    """Across the original attempt and every re-submission of each record."""
    progress = original_progress(platform_world.ctx, platform_world.batch_no(label))
    assert progress["records"] and progress["outstanding"] == 0, progress


@then(platform_phrase("no record succeeded twice"))
@then(platform_phrase("没有任何记录成功两次"))
def none_twice(platform_world: PlatformWorld) -> None:
    """Checked on both sides: the platform's attempts, and the bank's results per serial."""
    world = platform_world
    rows = world.ctx.store.all("SELECT record_id, original_id, batch_no, serial, state FROM batch_records")
    assert not [r for r in rows if r["state"] == "DOUBLE_SUCCESS"]
    original_of = {r["serial"]: r["original_id"] or r["record_id"] for r in rows}
    bank_successes: Counter[int] = Counter()
    for batch_no in sorted({r["batch_no"] for r in rows}):
        manifest = world.control.manifest(world.scenario.handle.app_id, str(batch_no))
        bank_successes.update(original_of[r["serial"]] for r in manifest["records"] if r["result"] == "S")
    twice = {k: n for k, n in bank_successes.items() if n > 1}
    assert not twice, f"originals paid more than once at the bank: {twice}"
    platform_successes = Counter(original_of[r["serial"]] for r in rows if r["state"] == "SUCCESS")
    assert platform_successes == bank_successes, (platform_successes, bank_successes)


@then(platform_phrase("the withholding is refused: the top-ups of {day:Day} come first"))
@then(platform_phrase("代扣被拒绝：须先完成{day:Day}日充值的代发"))
def withholding_refused(platform_world: PlatformWorld, day: str) -> None:
    outcome = platform_world.results["withhold"]
    assert isinstance(outcome, StepRefused), f"withholding was not refused: batch {outcome}"
    assert "top-ups first" in str(outcome), outcome
    dk = platform_world.ctx.store.scalar("SELECT count(*) FROM batches WHERE kind = 'DK'")
    assert dk == 0, f"{dk} withholding batches exist"


@then(platform_phrase("the withholding goes out as batch {label:Batch}"))
@then(platform_phrase("代扣以批次{label:Batch}发出"))
def withholding_sent(platform_world: PlatformWorld, label: str) -> None:
    outcome = platform_world.results["withhold"]
    assert not isinstance(outcome, Exception), f"withholding refused: {outcome}"
    platform_world.label(label, outcome)
    state = platform_world.ctx.store.scalar("SELECT state FROM batches WHERE batch_no = ?", (outcome,))
    assert state == "SENT", state


@then(platform_phrase("the approval of {day:Day} is recorded with who and when"))
@then(platform_phrase("{day:Day}日的审核记录了审核人和时间"))
def approval_recorded(platform_world: PlatformWorld, day: str) -> None:
    run = platform_world.ctx.store.one("SELECT approved_by, approved_at FROM recon_runs WHERE bill_date = ?",
                                       (platform_world.day(day).isoformat(),))
    assert run is not None and run["approved_by"] == APPROVER and run["approved_at"], dict(run or {})
