"""Steps about batch files: disbursement (代发) and withholding (代扣), return and rejection files.

Files go up over SFTP the documented way and come back over SFTP; they are built and
read with the contract's codec (``contracts/codec.py``), so a step checks what a
platform would see, not the simulator's insides.
"""

from __future__ import annotations

from typing import Any

import pytest
from pytest_bdd import given, parsers, then, when

from contracts.codec import FileFormatError, decode_file, load_layout
from contracts.money import format_fen
from features.steps.context import ScenarioContext
from features.steps.types import phrase
from simulator.testing.bank_api import RETURNS

# -- Given: how the bank will treat records and files -----------------------------------------


@given(phrase("the bank will fail records for the account of {name:Person} with code {code:Code}"))
@given(phrase("银行将以返回码{code:Code}使{name:Person}账户的记录失败"))
def fail_records_for(scenario_context: ScenarioContext, name: str, code: str) -> None:
    """A rule put first in the profile's ``batches.rules`` (first match wins)."""
    rules = scenario_context.control.profile()["batches"]["rules"]
    rule = {"name": f"scenario: {name} fails with {code}",
            "match": {"account_no": scenario_context.person(name).account}, "action": {"fail": code}}
    scenario_context.control.patch_profile({"batches": {"rules": [rule, *rules]}})


@given(phrase("the return file for batch {label:Batch} will be {fault:FileFault}"))
@given(phrase("批次{label:Batch}的回盘文件将{fault:FileFault}"))
def return_file_fault(scenario_context: ScenarioContext, label: str, fault: dict[str, Any]) -> None:
    """A rule put first in the profile's ``batches.file_faults`` for that batch number."""
    faults = scenario_context.control.profile()["batches"]["file_faults"]
    rule = {"name": f"scenario: {label} {fault}", "match": {"batch_no": label[1:]}, "action": fault}
    scenario_context.control.patch_profile({"batches": {"file_faults": [rule, *faults]}})


@given(phrase("the platform's 98 account holds {amount:Money} CNY"))
@given(phrase("平台98监管账户有{amount:Money}元"))
def supervision_funded(scenario_context: ScenarioContext, amount: int) -> None:
    """WeChat's settlement of the top-ups, as a deposit into the supervision account."""
    scenario_context.deposit(scenario_context.platform["supervision_account"], amount)


# -- When: uploads -------------------------------------------------------------------------------


@when(phrase("the platform uploads a disbursement batch {label:Batch} paying {records:Entries}"))
@when(phrase("平台上传代发批次{label:Batch}，入账{records:Entries}"))
def upload_disbursement(scenario_context: ScenarioContext, label: str,
                        records: list[tuple[str, int]]) -> None:
    batch = scenario_context.build_batch("DF", label, records)
    scenario_context.upload(batch, scenario_context.encode(batch))


@when(phrase("the platform uploads a withholding batch {label:Batch} charging {records:Entries}"))
@when(phrase("平台上传代扣批次{label:Batch}，扣款{records:Entries}"))
def upload_withholding(scenario_context: ScenarioContext, label: str,
                       records: list[tuple[str, int]]) -> None:
    batch = scenario_context.build_batch("DK", label, records)
    scenario_context.upload(batch, scenario_context.encode(batch))


@when(phrase("the platform uploads a disbursement batch {label:Batch} paying {records:Entries} "
             "whose header total says {total:Money}"))
@when(phrase("平台上传代发批次{label:Batch}，入账{records:Entries}，但汇总金额写成{total:Money}元"))
def upload_bad_total(scenario_context: ScenarioContext, label: str, records: list[tuple[str, int]],
                     total: int) -> None:
    batch = scenario_context.build_batch("DF", label, records)
    scenario_context.upload(batch, scenario_context.encode(batch, total=total))


@when(phrase("the platform uploads a disbursement batch {label:Batch} paying {records:Entries} "
             "whose header count says {count:d}"))
@when(phrase("平台上传代发批次{label:Batch}，入账{records:Entries}，但汇总笔数写成{count:d}"))
def upload_bad_count(scenario_context: ScenarioContext, label: str, records: list[tuple[str, int]],
                     count: int) -> None:
    batch = scenario_context.build_batch("DF", label, records)
    scenario_context.upload(batch, scenario_context.encode(batch, count=count))


@when(phrase("the platform uploads a disbursement batch {label:Batch} paying {records:Entries} "
             "encoded in UTF-8"))
@when(phrase("平台上传UTF-8编码的代发批次{label:Batch}，入账{records:Entries}"))
def upload_utf8(scenario_context: ScenarioContext, label: str, records: list[tuple[str, int]]) -> None:
    batch = scenario_context.build_batch("DF", label, records)
    data = scenario_context.encode(batch).decode("gbk").encode("utf-8")
    try:
        data.decode("gbk")
    except UnicodeDecodeError:
        pass
    else:  # some UTF-8 text happens to be valid GBK too; then this file proves nothing
        raise AssertionError(f"the UTF-8 file for {label} also decodes as GBK; use other names")
    scenario_context.upload(batch, data)


@when(phrase("the platform uploads a disbursement batch {label:Batch} with the batch number of "
             "{earlier:Batch} paying {records:Entries}"))
@when(phrase("平台沿用批次{earlier:Batch}的批次号上传代发批次{label:Batch}，入账{records:Entries}"))
def upload_reused_number(scenario_context: ScenarioContext, label: str, earlier: str,
                         records: list[tuple[str, int]]) -> None:
    batch = scenario_context.build_batch("DF", label, records,
                                         batch_no=scenario_context.batch(earlier).batch_no)
    scenario_context.upload(batch, scenario_context.encode(batch))


# -- Then: return files --------------------------------------------------------------------------

_REPORTS = (r"the return file for batch (?P<label>B[1-9][0-9]*) reports (?P<ok>[0-9]+) success(?:es)? "
            r"and (?P<failed>[0-9]+) failures?")


@then(parsers.re(_REPORTS), converters={"ok": int, "failed": int})
@then(phrase("批次{label:Batch}的回盘文件显示成功{ok:d}笔、失败{failed:d}笔"))
def return_reports(scenario_context: ScenarioContext, label: str, ok: int, failed: int) -> None:
    """The return file's header and details agree with each other and with the request."""
    batch = scenario_context.batch(label)
    ret = scenario_context.read_return(label)
    h = ret.header
    assert (h["batch_no"], h["kind"]) == (batch.batch_no, batch.kind), h
    assert [(d["serial"], d["amount"]) for d in ret.details] == [(r.serial, r.fen) for r in batch.records]
    succeeded = [d for d in ret.details if d["result"] == "S"]
    assert (h["success_count"], h["fail_count"]) == (ok, failed), h
    assert (len(succeeded), len(ret.details) - len(succeeded)) == (ok, failed)
    assert h["success_amount"] == sum(d["amount"] for d in succeeded), h
    assert ret.trailer is not None and ret.trailer["line_count"] == len(ret.details) + 2


def _detail_for(scenario_context: ScenarioContext, label: str, name: str) -> dict[str, Any]:
    record = scenario_context.batch(label).record_for(name)
    ret = scenario_context.read_return(label)
    [detail] = [d for d in ret.details if d["serial"] == record.serial]
    return detail


@then(phrase("the record for {name:Person} in batch {label:Batch} failed with code {code:Code}"))
@then(phrase("批次{label:Batch}中{name:Person}的记录失败，返回码为{code:Code}"))
def record_failed(scenario_context: ScenarioContext, name: str, label: str, code: str) -> None:
    detail = _detail_for(scenario_context, label, name)
    assert (detail["result"], detail["code"]) == ("F", code), detail


@then(phrase("the record for {name:Person} in batch {label:Batch} succeeded"))
@then(phrase("批次{label:Batch}中{name:Person}的记录成功"))
def record_succeeded(scenario_context: ScenarioContext, name: str, label: str) -> None:
    detail = _detail_for(scenario_context, label, name)
    assert (detail["result"], detail["code"]) == ("S", "0000"), detail


@then(phrase("every record of batch {label:Batch} succeeded"))
@then(phrase("批次{label:Batch}的记录全部成功"))
def all_succeeded(scenario_context: ScenarioContext, label: str) -> None:
    ret = scenario_context.read_return(label)
    assert ret.details and {(d["result"], d["code"]) for d in ret.details} == {("S", "0000")}, ret.details


@then(phrase("no return file for batch {label:Batch} has been written"))
@then(phrase("批次{label:Batch}尚无回盘文件"))
def no_return_file(scenario_context: ScenarioContext, label: str) -> None:
    stem = scenario_context.batch(label).file_name.removesuffix(".txt")
    assert not [n for n in scenario_context.returns() if n.startswith(stem)], scenario_context.returns()


@then(phrase("the return file for batch {label:Batch} has been written twice with the same records"))
@then(phrase("批次{label:Batch}的回盘文件生成了两份且明细相同"))
def return_twice(scenario_context: ScenarioContext, label: str) -> None:
    name = scenario_context.return_name(label)
    copy = name.replace("_RET.txt", "_RET_R1.txt")
    assert {name, copy} <= set(scenario_context.returns()), scenario_context.returns()
    first, second = scenario_context.read_return(label), scenario_context.read_return(label, copy)
    assert first.details == second.details and first.header["batch_no"] == second.header["batch_no"]


@then(phrase("the return file for batch {label:Batch} is refused by the codec with code {code:Code}"))
@then(phrase("批次{label:Batch}的回盘文件无法解析，错误码为{code:Code}"))
def return_unreadable(scenario_context: ScenarioContext, label: str, code: str) -> None:
    """A damaged copy (cut short, no trailer): the platform must not act on it."""
    data = scenario_context.sftp.read(f"{RETURNS}/{scenario_context.return_name(label)}")
    with pytest.raises(FileFormatError) as raised:
        decode_file(load_layout("return"), data)
    assert raised.value.code == code, raised.value


@then(phrase("the return file for batch {label:Batch} lists fewer records than its header counts"))
@then(phrase("批次{label:Batch}的回盘文件明细少于汇总笔数"))
def return_short(scenario_context: ScenarioContext, label: str) -> None:
    """Readable, but the figures do not add up: the platform must not act on it either."""
    ret = scenario_context.read_return(label)
    assert len(ret.details) < ret.header["record_count"], ret.header
    assert len(ret.details) < len(scenario_context.batch(label).records)


# -- Then: rejections and money -----------------------------------------------------------------


@then(phrase("the batch file {label:Batch} is rejected with code {code:Code}"))
@then(phrase("批次文件{label:Batch}被拒绝，拒绝码为{code:Code}"))
def batch_rejected(scenario_context: ScenarioContext, label: str, code: str) -> None:
    """Listed by the control API, and the rejection file in download/returns says so."""
    batch = scenario_context.batch(label)
    [entry] = [r for r in scenario_context.control.rejections(scenario_context.handle.app_id)
               if r["file_name"] == batch.file_name]
    assert entry["code"] == code, entry
    data = scenario_context.sftp.read(f"{RETURNS}/{entry['reject_file']}")
    rejection = decode_file(load_layout("rejection"), data)
    assert (rejection.header["original_file_name"], rejection.header["code"]) == (batch.file_name, code)


@then(phrase("batch {label:Batch} moved no money"))
@then(phrase("批次{label:Batch}未发生资金变动"))
def moved_no_money(scenario_context: ScenarioContext, label: str) -> None:
    assert scenario_context.balances() == scenario_context.batch(label).balances_before


@then(phrase("the platform's 98 account balance is {amount:Money}"))
@then(phrase("平台98监管账户余额为{amount:Money}元"))
def supervision_balance(scenario_context: ScenarioContext, amount: int) -> None:
    got = scenario_context.balance(scenario_context.platform["supervision_account"])
    assert got == amount, f"98 account holds {format_fen(got)}, expected {format_fen(amount)}"


@then(phrase("the platform's settlement account balance is {amount:Money}"))
@then(phrase("平台结算账户余额为{amount:Money}元"))
def settlement_balance(scenario_context: ScenarioContext, amount: int) -> None:
    got = scenario_context.balance(scenario_context.platform["settlement_account"])
    assert got == amount, f"settlement account holds {format_fen(got)}, expected {format_fen(amount)}"
