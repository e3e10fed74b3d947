"""The running channel answers as ``contracts/wechat-pay.openapi.yaml`` says, for generated requests.

A bounded, deterministic schemathesis run of the WeChat contract against the session's real
``banksim serve`` (see conftest.py), every request signed over the exact bytes sent with the
development merchant's key. Checked on every answer: no 5xx, a documented status, the
documented content type and a body matching the documented schema. A plain test then walks
the valid path (create, query, close, bill) through the same signed session.
"""

from __future__ import annotations

from itertools import count
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import settings
from requests.auth import AuthBase
from requests.models import PreparedRequest
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from contracts import contract_path
from simulator.testing.wechat_keys import dev_sign
from tests.contract.conftest import BankServer, signable_body

MAX_EXAMPLES = 15
MCHID = "1900000109"
SCHEMA = schemathesis.openapi.from_path(contract_path("wechat-pay.openapi.yaml"),
                                        config=schemathesis.Config())
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
_NONCES = count()

pytestmark = pytest.mark.network


class WechatSignature(AuthBase):
    """Signs the exact bytes ``requests`` is about to send (``contracts.wechat_signing``)."""

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        body = signable_body(r)
        r.headers["Authorization"] = dev_sign(r.method or "GET", r.path_url, body)
        return r


@pytest.fixture(scope="module")
def wechat_session() -> Any:
    with requests.Session() as session:
        session.auth = WechatSignature()
        yield session


@SCHEMA.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None)
def test_generated_requests_conform(case: schemathesis.Case[Any], bank_server: BankServer,
                                    wechat_session: requests.Session) -> None:
    case.call_and_validate(base_url=bank_server.url, session=wechat_session, checks=CHECKS)


def test_valid_order_path_conforms(bank_server: BankServer, wechat_session: requests.Session) -> None:
    def call(method: str, path: str, expect: int, **kwargs: Any) -> schemathesis.Response:
        case = SCHEMA[path][method].Case(**kwargs)
        response = case.call(base_url=bank_server.url, session=wechat_session)
        case.validate_response(response, checks=CHECKS)
        assert response.status_code == expect, response.text
        return response

    body = {"appid": "wxd678efh567hg6787", "mchid": MCHID, "description": "余额充值",
            "out_trade_no": "CONTRACT-0001", "notify_url": "http://127.0.0.1:9/notify",
            "amount": {"total": 100, "currency": "CNY"}, "attach": "contract"}
    native = "/wechat/v3/pay/transactions/native"
    by_no = "/wechat/v3/pay/transactions/out-trade-no/{out_trade_no}"
    first = call("POST", native, 200, body=body, media_type="application/json").json()
    assert call("POST", native, 200, body=body, media_type="application/json").json() == first
    params = {"path_parameters": {"out_trade_no": "CONTRACT-0001"}, "query": {"mchid": MCHID}}
    assert call("GET", by_no, 200, **params).json()["trade_state"] == "NOTPAY"
    call("POST", by_no + "/close", 204, path_parameters={"out_trade_no": "CONTRACT-0001"},
         body={"mchid": MCHID}, media_type="application/json")
    assert call("GET", by_no, 200, **params).json()["trade_state"] == "CLOSED"
    missing = call("GET", by_no, 404, path_parameters={"out_trade_no": "CONTRACT-NONE"},
                   query={"mchid": MCHID})
    assert missing.json()["code"] == "ORDER_NOT_EXIST"
    early = call("GET", "/wechat/v3/bill/tradebill", 400, query={"bill_date": "2099-01-01"})
    assert early.json()["code"] == "NO_STATEMENT_EXIST"
