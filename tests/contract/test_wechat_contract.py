"""The channel serves exactly what ``contracts/wechat-pay.openapi.yaml`` documents.

Like the bank's contract check (``test_openapi_contract.py``, whose document reader this
reuses): the app's own OpenAPI document (``build_wechat_api(bank).openapi()``, paths under
its mount point ``/wechat/v3``) and the hand-maintained contract are compared operation by
operation once ``$ref``s are resolved and prose is dropped. The channel's error codes
(``simulator.wechat.errors``) and the codes and statuses the contract documents agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest
import yaml

from contracts import contract_path
from simulator.bank import Bank
from simulator.config import load_profile
from simulator.http.wechat_routes import PREFIX, build_wechat_api
from simulator.wechat.errors import all_wechat_errors
from tests.contract.test_openapi_contract import Spec, differences

CONTRACT_FILE = contract_path("wechat-pay.openapi.yaml")
CODE_IN_PROSE = re.compile(r"`([A-Z][A-Z_]+)`")


def _integral(node: Any) -> Any:
    """Whole floats as ints: pydantic writes ``minimum: 1.0`` where the contract says ``1``."""
    if isinstance(node, float) and node.is_integer():
        return int(node)
    if isinstance(node, dict):
        return {k: _integral(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_integral(v) for v in node]
    return node


@pytest.fixture(scope="module")
def contract() -> Spec:
    doc = yaml.safe_load(CONTRACT_FILE.read_text("utf-8"))
    assert isinstance(doc, dict), f"{CONTRACT_FILE} is not a YAML mapping"
    return Spec("contract", doc)


@pytest.fixture(scope="module")
def served() -> Iterator[Spec]:
    bank = Bank(load_profile(None), None)
    try:
        doc = build_wechat_api(bank).openapi()
        doc = {**doc, "paths": {PREFIX + path: item for path, item in doc["paths"].items()}}
        yield Spec("app", _integral(doc))
    finally:
        bank.close()


OPERATION_IDS = ["create_native_order", "query_order", "close_order", "get_trade_bill", "download_bill",
                 "list_certificates", "query_order_by_transaction_id",
                 "create_refund", "query_refund",
                 "create_jsapi_order", "create_app_order", "create_h5_order"]


def test_contract_is_a_hand_maintained_openapi_3_1_document(contract: Spec) -> None:
    text = CONTRACT_FILE.read_text("utf-8")
    assert str(contract.doc.get("openapi", "")).startswith("3.1.")
    assert "HAND-MAINTAINED" in text.split("\nopenapi:", 1)[0]
    description = contract.doc["info"]["description"]
    for needle in ('WECHATPAY2-SHA256-RSA2048 mchid="<mchid>",nonce_str="<nonce>",timestamp="<unix s>",'
                   'serial_no="<merchant certificate serial>",signature="<sig>"',
                   'METHOD + "\\n" + URL + "\\n" + TIMESTAMP + "\\n" + NONCE + "\\n" + '
                   'BODY + "\\n"', 'TIMESTAMP + "\\n" + NONCE + "\\n" + BODY + "\\n"', "SHA256withRSA",
                   "Wechatpay-Signature", "PUB_KEY_ID_", "AEAD_AES_256_GCM", "retry_schedule",
                   "请求重放"):
        assert needle in description, f"info.description no longer documents {needle!r}"


def test_same_operations(served: Spec, contract: Spec) -> None:
    assert served.op_keys() == contract.op_keys(), (
        f"only served: {sorted(served.op_keys() - contract.op_keys())}; "
        f"only in the contract: {sorted(contract.op_keys() - served.op_keys())}")
    assert sorted(contract.operations()) == sorted(OPERATION_IDS)


@pytest.mark.parametrize("op_id", OPERATION_IDS)
def test_same_parameters_body_and_responses(op_id: str, served: Spec, contract: Spec) -> None:
    app_params, documented = served.parameters(op_id), contract.parameters(op_id)
    lines = [f"parameter {key} only in the app" for key in sorted(app_params.keys() - documented.keys())]
    lines += [f"parameter {key} only in the contract"
              for key in sorted(documented.keys() - app_params.keys())]
    for key in sorted(app_params.keys() & documented.keys()):
        lines += differences(app_params[key], _integral(documented[key]), f"parameter {key}")
    lines += differences(served.request_body(op_id), _integral(contract.request_body(op_id)), "requestBody")
    app_responses, contract_responses = served.responses(op_id), _integral(contract.responses(op_id))
    if app_responses.keys() != contract_responses.keys():
        lines.append(f"statuses: app {sorted(app_responses)}, contract {sorted(contract_responses)}")
    for status in sorted(app_responses.keys() & contract_responses.keys()):
        lines += differences(app_responses[status], contract_responses[status], f"responses.{status}")
    assert not lines, f"{op_id}: the app and {CONTRACT_FILE.name} differ:\n  " + "\n  ".join(lines)


def _examples(media: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    if "example" in media:
        yield "example", media["example"]
    for name, example in media.get("examples", {}).items():
        yield name, example["value"]


def _documented_media(contract: Spec) -> Iterator[tuple[str, int | None, dict[str, Any]]]:
    for op_id, (_, _, op, _) in sorted(contract.operations().items()):
        if "requestBody" in op:
            for media in contract.deref(op["requestBody"])["content"].values():
                yield f"{op_id} requestBody", None, media
        for status, response in op["responses"].items():
            for media in contract.deref(response).get("content", {}).values():
                yield f"{op_id} {status}", int(status), media


def test_examples_match_their_schemas(contract: Spec) -> None:
    problems = []
    for where, _, media in _documented_media(contract):
        validator = jsonschema_rs.Draft202012Validator(contract.inline(media["schema"]))
        problems += [f"{where} {name}: {error.message}" for name, value in _examples(media)
                     for error in validator.iter_errors(value)]
    assert not problems, "\n  ".join(problems)


def test_every_error_code_is_documented_with_its_status(contract: Spec) -> None:
    classes = {cls.code: cls.status for cls in all_wechat_errors()}
    assert contract.doc["x-codes"] == classes
    table = contract.doc["info"]["description"]
    for code, status in classes.items():
        assert re.search(rf"\| `{code}` \| {status} \|", table), f"{code} is missing from the code table"


def test_error_examples_use_codes_of_their_own_status(contract: Spec) -> None:
    statuses = {cls.code: cls.status for cls in all_wechat_errors()}
    wrong = []
    for where, status, media in _documented_media(contract):
        if status is None or status < 400:
            continue
        for name, value in _examples(media):
            code = value.get("code")
            if statuses.get(code) != status:
                wrong.append(f"{where} {name}: {code} is answered with {statuses.get(code)}")
    for op_id, (_, _, op, _) in contract.operations().items():
        for status, response in op["responses"].items():
            for code in CODE_IN_PROSE.findall(contract.deref(response).get("description", "")):
                if code in statuses and statuses[code] != int(status):
                    wrong.append(f"{op_id} {status} description: {code} is answered with {statuses[code]}")
    assert not wrong, "\n  ".join(wrong)
