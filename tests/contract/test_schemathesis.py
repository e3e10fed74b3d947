"""The running bank answers as ``contracts/bank-api.openapi.yaml`` says, for generated requests.

A bounded, deterministic schemathesis run of the CONTRACT (not the app's own schema) against a
real ``banksim serve`` (see conftest.py): every operation gets the contract's examples, its
coverage cases and ``MAX_EXAMPLES`` generated cases, positive and negative, each one signed
over the exact bytes sent. Checked on every answer: no 5xx, a documented status, the
documented content type and headers, and a body matching the documented schema.

Fuzzing mostly meets rejections (random ID numbers, unknown accounts), so a plain test also
walks the valid path (open, query, freeze, unfreeze, refund, close) through the same signed
session and checks each answer against the contract. Last, the ledger invariants must hold.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from contracts import contract_path
from simulator.domain.identity import make_card_number, make_id_number
from simulator.operations import OPERATIONS
from tests.contract.conftest import BankServer

MAX_EXAMPLES = 25
# An explicit default config: a stray schemathesis.toml must not change what CI runs.
SCHEMA = schemathesis.openapi.from_path(contract_path("bank-api.openapi.yaml"), config=schemathesis.Config())
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]

pytestmark = pytest.mark.network


# derandomize: the same cases on every run. Hypothesis derives the seed from this function's
# source, so editing it (decorators included) changes which cases are generated.
@SCHEMA.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None)
def test_generated_requests_conform(case: schemathesis.Case[Any], bank_server: BankServer,
                                    signed_session: requests.Session) -> None:
    case.call_and_validate(base_url=bank_server.url, session=signed_session, checks=CHECKS)


# --- malformed bodies and encoded paths: pinned here, not left to generation ------------------

# Each must be answered as the contract's 400: code 1010 in the ErrorAnswer shape.
MALFORMED_BODIES = {
    "not-utf8": b"p\xff",
    "int-over-4300-digits": b"1" * 5000,
    "truncated-json": b'{"request_serial": "MAL-1"',
    "json-array": b"[]",
    "empty": b"",
}
MUTATING = [(op.method, op.path) for op in OPERATIONS if op.mutating]


@pytest.mark.parametrize("body", list(MALFORMED_BODIES.values()), ids=list(MALFORMED_BODIES))
def test_malformed_bodies_get_the_documented_error(body: bytes, bank_server: BankServer,
                                                   signed_session: requests.Session) -> None:
    problems = []
    for method, path in MUTATING:
        operation = SCHEMA[path][method]
        url = bank_server.url + path.replace("{account_no}", "6231883196649973404")
        response = signed_session.request(method, url, data=body, timeout=10,
                                          headers={"Content-Type": "application/json"})
        if not operation.is_valid_response(response):
            problems.append(f"{method} {path}: HTTP {response.status_code} {response.text[:200]!r} "
                            f"does not match the contract's response schema")
        elif (response.status_code, response.json().get("code")) != (400, "1010"):
            problems.append(f"{method} {path}: expected 400 / 1010, got HTTP {response.status_code} "
                            f"{response.text[:200]!r}")
    assert not problems, f"body {body[:40]!r}:\n  " + "\n  ".join(problems)


def test_signature_covers_the_path_as_sent(bank_server: BankServer,
                                           signed_session: requests.Session) -> None:
    """contracts/signing.py: PATH_AND_QUERY is the path exactly as sent, percent-encoding included."""
    response = signed_session.get(f"{bank_server.url}/api/v1/refunds/a%20b", timeout=10)
    assert SCHEMA["/api/v1/refunds/{request_serial}"]["GET"].is_valid_response(response), response.text
    # 'a b' is no serial: a schema error (1010), not a bad signature (1003).
    assert (response.status_code, response.json()["code"]) == (400, "1010"), (
        f"GET /api/v1/refunds/a%20b signed over the path as sent: HTTP {response.status_code} "
        f"{response.text}")


# --- the valid path ---------------------------------------------------------------------------


class Caller:
    """Sends one contract operation through the signed session and validates the answer."""

    def __init__(self, server: BankServer, session: requests.Session) -> None:
        self.server = server
        self.session = session

    def __call__(self, method: str, path: str, *, expect: int = 200, body: Any = None,
                 path_parameters: dict[str, str] | None = None) -> schemathesis.Response:
        operation = SCHEMA[path][method]
        case = operation.Case(path_parameters=path_parameters or {},
                              **({} if body is None else {"body": body, "media_type": "application/json"}))
        response = case.call(base_url=self.server.url, session=self.session)
        case.validate_response(response, checks=CHECKS)
        assert response.status_code == expect, (
            f"{method} {case.formatted_path}: expected {expect}, got {response.status_code}: {response.text}")
        return response


def replay_header(response: schemathesis.Response) -> str | None:
    values = response.headers.get("x-idempotent-replay")  # schemathesis: lowercase keys, list values
    return values[0] if values else None


def _admin(session: requests.Session, server: BankServer, path: str, body: Any = None) -> Any:
    response = session.post(f"{server.url}/_admin{path}", json=body, timeout=10)
    assert response.status_code == 200, f"POST /_admin{path}: {response.status_code} {response.text}"
    return response.json()


def test_valid_account_lifecycle_conforms(bank_server: BankServer, signed_session: requests.Session,
                                          admin_session: requests.Session) -> None:
    call = Caller(bank_server, signed_session)
    opening = {
        "request_serial": "LIFE-open-1",
        "name": "李四",
        "id_number": make_id_number("310104", date(1988, 6, 15), 731),
        "mobile": "13912345678",
        "bound_card_number": make_card_number("622848", 19, 20260105),
        "bound_card_kind": "DEBIT_I",
    }
    opened = call("POST", "/api/v1/accounts/open", body=opening)
    account = opened.json()["data"]
    account_no = account["account_no"]
    assert account["status"] == "PENDING_IMAGES"
    assert replay_header(opened) is None

    replayed = call("POST", "/api/v1/accounts/open", body=opening)
    assert replay_header(replayed) == "true"
    assert replayed.json() == opened.json()
    queried = call("GET", "/api/v1/accounts/openings/{request_serial}",
                   path_parameters={"request_serial": "LIFE-open-1"})
    assert queried.json() == opened.json()

    _admin(admin_session, bank_server, f"/accounts/{account_no}/activate")
    _admin(admin_session, bank_server, f"/accounts/{account_no}/deposit", {"amount": "100.00"})
    acct = {"account_no": account_no}
    view = call("GET", "/api/v1/accounts/{account_no}", path_parameters=acct).json()["data"]
    assert (view["status"], view["balance"]) == ("ACTIVE", "100.00")
    assert view["limits"]["daily_outflow_used"] == "0.00"

    frozen = call("POST", "/api/v1/accounts/{account_no}/freeze", path_parameters=acct,
                  body={"request_serial": "LIFE-freeze-1", "reason": "contract test"})
    assert frozen.json()["data"]["frozen"] is True
    refused = call("POST", "/api/v1/refunds", expect=422, body={
        "request_serial": "LIFE-refund-frozen", "account_no": account_no, "amount": "10.00"})
    assert refused.json()["code"] == "3017"
    unfrozen = call("POST", "/api/v1/accounts/{account_no}/unfreeze", path_parameters=acct,
                    body={"request_serial": "LIFE-unfreeze-1"})
    assert unfrozen.json()["data"]["frozen"] is False

    refund = {"request_serial": "LIFE-refund-1", "account_no": account_no, "amount": "100.00",
              "memo": "trip cancelled"}
    paid = call("POST", "/api/v1/refunds", body=refund).json()["data"]
    assert (paid["status"], paid["amount"]) == ("PAID", "100.00")
    found = call("GET", "/api/v1/refunds/{request_serial}",
                 path_parameters={"request_serial": "LIFE-refund-1"}).json()["data"]
    assert found == paid
    stored = call("GET", "/api/v1/refunds/{request_serial}", expect=422,
                  path_parameters={"request_serial": "LIFE-refund-frozen"})
    assert (stored.json()["code"], replay_header(stored)) == ("3017", "true")
    unknown = call("GET", "/api/v1/refunds/{request_serial}", expect=404,
                   path_parameters={"request_serial": "LIFE-never-sent"})
    assert unknown.json()["code"] == "1021"

    closed = call("POST", "/api/v1/accounts/{account_no}/close", path_parameters=acct,
                  body={"request_serial": "LIFE-close-1"}).json()["data"]
    assert closed["status"] == "CLOSED" and closed["closed_at"] is not None
    view = call("GET", "/api/v1/accounts/{account_no}", path_parameters=acct).json()["data"]
    assert (view["status"], view["balance"]) == ("CLOSED", "0.00")
    conflict = call("POST", "/api/v1/accounts/{account_no}/close", expect=409, path_parameters=acct,
                    body={"request_serial": "LIFE-open-1"})
    assert conflict.json()["code"] == "1020"


# Runs last in this module: after the generated requests and the valid path.
def test_ledger_invariants_hold_after_the_run(bank_server: BankServer,
                                              admin_session: requests.Session) -> None:
    response = admin_session.get(f"{bank_server.url}/_admin/invariants", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True, "violations": []}, response.json()
