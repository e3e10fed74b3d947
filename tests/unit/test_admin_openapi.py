"""The control API documents itself: its OpenAPI document builds (every route's types resolve)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from simulator.bank import Bank
from simulator.http.app import create_app


@pytest.fixture
def client(bank: Bank) -> Iterator[TestClient]:
    with TestClient(create_app(bank)) as c:
        yield c


def test_the_control_api_openapi_document_lists_every_route(client: TestClient) -> None:
    response = client.get("/_admin/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/clock/advance", "/wechat/orders/{out_trade_no}/pay", "/batches/{app_id}/{batch_no}",
                 "/invariants"):
        assert path in paths
    pay = paths["/wechat/orders/{out_trade_no}/pay"]["post"]
    assert {"out_trade_no", "mchid"} <= {p["name"] for p in pay["parameters"]}
