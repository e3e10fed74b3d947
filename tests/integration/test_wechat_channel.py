"""The fake WeChat Pay channel over real sockets: `banksim serve` and a platform's notify_url.

The notify receiver is ``http.server`` in a thread on a free 127.0.0.1 port; it checks
nothing itself, it records what arrived and answers with the status the test sets. In
manual clock mode the tests make notifications go out by advancing the clock (or by
``POST /_admin/wechat/notifications/deliver``), which sends everything due before it answers.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from contracts.money import parse_yuan
from contracts.wechat_bill import parse_bill
from contracts.wechat_signing import PrivateKey, decrypt_resource
from simulator.testing.wechat_keys import channel_signed, dev_channel_keys, dev_sign, stranger_key

if TYPE_CHECKING:
    from tests.integration.conftest import BankServer

pytestmark = pytest.mark.network

MCHID, APPID = "1900000109", "wxd678efh567hg6787"
V3_KEY = "banksimdevapiv3key0123456789abcd"
SUPERVISION = "98010078801000001"
NATIVE = "/wechat/v3/pay/transactions/native"
WAIT_S = 10.0


# -- the platform's notify_url -----------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def resource(self) -> dict[str, Any]:
        r = json.loads(self.body)["resource"]
        data: dict[str, Any] = json.loads(decrypt_resource(V3_KEY, r["ciphertext"], r["associated_data"],
                                                           r["nonce"]))
        return data

    def verified(self) -> bool:
        h = self.headers
        return channel_signed(h, self.body)


@dataclass
class Receiver:
    url: str
    status: int = 200
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def by_order(self, out_trade_no: str) -> list[Received]:
        with self.lock:
            got = list(self.received)
        return [r for r in got if r.resource()["out_trade_no"] == out_trade_no]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                state.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
                status = state.status
            payload = b'{"code":"SUCCESS"}' if status == 200 else b""
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/wechat/notify"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# -- a signing v3 client ---------------------------------------------------------------------------


class Wechat:
    def __init__(self, server: BankServer, api_key: PrivateKey | None = None, mchid: str = MCHID) -> None:
        self.http = httpx.Client(base_url=server.url, timeout=10.0)
        self.api_key = api_key
        self.mchid = mchid
        self.admin = server.admin

    def request(self, method: str, path: str, body: Any = None, *, sign: bool = True) -> httpx.Response:
        data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"} if data else {}
        if sign:
            headers["Authorization"] = dev_sign(method, path, data, key=self.api_key, mchid=self.mchid)
        return self.http.request(method, path, content=data, headers=headers)

    def create(self, out_trade_no: str, total: int, notify_url: str) -> httpx.Response:
        return self.request("POST", NATIVE, {
            "appid": APPID, "mchid": MCHID, "description": "余额充值", "out_trade_no": out_trade_no,
            "notify_url": notify_url, "amount": {"total": total, "currency": "CNY"}})

    def query(self, out_trade_no: str) -> httpx.Response:
        return self.request("GET", f"/wechat/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={MCHID}")

    def pay(self, out_trade_no: str, **body: Any) -> dict[str, Any]:
        answer = self.admin.post(f"/wechat/orders/{out_trade_no}/pay", json=body)
        assert answer.status_code == 200, answer.text
        paid: dict[str, Any] = answer.json()
        return paid

    def advance(self, by: str) -> list[dict[str, Any]]:
        answer = self.admin.post("/clock/advance", json={"by": by})
        assert answer.status_code == 200, answer.text
        jobs: list[dict[str, Any]] = answer.json()["jobs_run"]
        return jobs

    def attempts(self, out_trade_no: str) -> list[dict[str, Any]]:
        answer = self.admin.get("/wechat/notifications", params={"out_trade_no": out_trade_no})
        assert answer.status_code == 200, answer.text
        rows: list[dict[str, Any]] = answer.json()
        return [r for r in rows if r["outcome"] not in ("PENDING", "DROPPED")]


@pytest.fixture
def wechat(server: BankServer) -> Iterator[Wechat]:
    client = Wechat(server)
    yield client
    client.http.close()


def created(wechat: Wechat, receiver: Receiver, out_trade_no: str, total: int = 10000) -> None:
    answer = wechat.create(out_trade_no, total, receiver.url)
    assert answer.status_code == 200, answer.text
    assert answer.json()["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")


def v3_error(response: httpx.Response, status: int, code: str) -> None:
    assert (response.status_code, response.json().get("code")) == (status, code), response.text


# -- orders and notifications ----------------------------------------------------------------------


def test_created_paid_notified_signed_and_decryptable(wechat: Wechat, receiver: Receiver) -> None:
    created(wechat, receiver, "TOPUP-0001")
    again = wechat.create("TOPUP-0001", 10000, receiver.url)
    assert again.status_code == 200  # the same content: the same answer
    v3_error(wechat.create("TOPUP-0001", 10001, receiver.url), 403, "OUT_TRADE_NO_USED")
    unpaid = wechat.query("TOPUP-0001").json()
    assert (unpaid["trade_state"], unpaid["amount"]["total"]) == ("NOTPAY", 10000)
    wechat.pay("TOPUP-0001", openid="oUpF8-platform-user")
    assert receiver.received == []  # manual clock: nothing goes out until told
    made = wechat.admin.post("/wechat/notifications/deliver").json()["attempts"]
    assert [(m["out_trade_no"], m["attempt"], m["outcome"], m["http_status"]) for m in made] == \
        [("TOPUP-0001", 1, "SUCCESS", 200)]
    (got,) = receiver.received
    assert got.verified()
    assert got.headers["wechatpay-serial"] == dev_channel_keys().by_certificate.serial
    body = json.loads(got.body)
    assert (body["event_type"], body["resource"]["algorithm"]) == ("TRANSACTION.SUCCESS", "AEAD_AES_256_GCM")
    query = wechat.query("TOPUP-0001").json()
    assert got.resource() == query
    assert (query["trade_state"], query["payer"]["openid"]) == ("SUCCESS", "oUpF8-platform-user")
    assert query["transaction_id"].startswith("4200") and len(query["transaction_id"]) == 28
    assert wechat.attempts("TOPUP-0001")[0]["sent_at"] == "2026-01-05T09:00:00+08:00"


def test_order_errors_close_and_signatures(wechat: Wechat, receiver: Receiver) -> None:
    v3_error(wechat.query("TOPUP-NONE"), 404, "ORDER_NOT_EXIST")
    created(wechat, receiver, "TOPUP-0001")
    created(wechat, receiver, "TOPUP-0002")
    close = "/wechat/v3/pay/transactions/out-trade-no/{}/close"
    answer = wechat.request("POST", close.format("TOPUP-0002"), {"mchid": MCHID})
    assert (answer.status_code, answer.content) == (204, b"")
    assert wechat.query("TOPUP-0002").json()["trade_state"] == "CLOSED"
    assert wechat.admin.post("/wechat/orders/TOPUP-0002/pay", json={}).json()["code"] == "ORDER_CLOSED"
    wechat.pay("TOPUP-0001")
    v3_error(wechat.request("POST", close.format("TOPUP-0001"), {"mchid": MCHID}), 400, "ORDERPAID")
    v3_error(wechat.request("POST", close.format("TOPUP-NONE"), {"mchid": MCHID}), 404, "ORDER_NOT_EXIST")
    # Signatures: none, a wrong key, an unknown merchant.
    v3_error(wechat.request("GET", "/wechat/v3/pay/transactions/out-trade-no/TOPUP-0001?mchid=1900000109",
                            sign=False), 401, "SIGN_ERROR")
    v3_error(_with(wechat, api_key=stranger_key()).query("TOPUP-0001"), 401, "SIGN_ERROR")
    v3_error(_with(wechat, mchid="1900000999").query("TOPUP-0001"), 401, "SIGN_ERROR")
    # Invalid bodies are PARAM_ERROR, never 422 and never 500.
    for bad in ({"mchid": MCHID}, {**_body("TOPUP-0003", receiver.url), "amount": {"total": 0}},
                {**_body("TOPUP-0003", receiver.url), "amount": {"total": 1.5}},
                {**_body("X", receiver.url)}, [1, 2]):
        v3_error(wechat.request("POST", NATIVE, bad), 400, "PARAM_ERROR")
    v3_error(_raw(wechat, NATIVE, b'{"appid": '), 400, "PARAM_ERROR")
    v3_error(_raw(wechat, NATIVE, b"\xff\xfe"), 400, "PARAM_ERROR")


def _with(wechat: Wechat, **changes: Any) -> Wechat:
    other = Wechat.__new__(Wechat)
    other.__dict__.update({**wechat.__dict__, **changes})
    return other


def _body(out_trade_no: str, url: str) -> dict[str, Any]:
    return {"appid": APPID, "mchid": MCHID, "description": "余额充值", "out_trade_no": out_trade_no,
            "notify_url": url, "amount": {"total": 100, "currency": "CNY"}}


def _raw(wechat: Wechat, path: str, data: bytes) -> httpx.Response:
    headers = {"Content-Type": "application/json",
               "Authorization": dev_sign("POST", path, data)}
    return wechat.http.post(path, content=data, headers=headers)


def test_dropped_duplicated_and_delayed_notifications(wechat: Wechat, receiver: Receiver) -> None:
    for name in ("TOPUP-0001-DROP", "TOPUP-0002-DUP", "TOPUP-0003-LATE", "TOPUP-0004"):
        created(wechat, receiver, name)
        wechat.pay(name)
    wechat.advance("1s")
    assert receiver.by_order("TOPUP-0001-DROP") == []
    dup = receiver.by_order("TOPUP-0002-DUP")
    assert len(dup) == 2 and all(r.verified() for r in dup)
    assert json.loads(dup[0].body)["id"] != json.loads(dup[1].body)["id"]  # two notifications
    assert dup[0].resource() == dup[1].resource()
    assert len(receiver.by_order("TOPUP-0004")) == 1
    assert receiver.by_order("TOPUP-0003-LATE") == []
    wechat.advance("1h59m58s")
    assert receiver.by_order("TOPUP-0003-LATE") == []
    wechat.advance("1s")
    late = receiver.by_order("TOPUP-0003-LATE")
    assert len(late) == 1 and late[0].verified()
    assert wechat.attempts("TOPUP-0003-LATE")[0]["sent_at"] == "2026-01-05T11:00:00+08:00"
    wechat.advance("2d")
    assert receiver.by_order("TOPUP-0001-DROP") == []  # 掉单: the platform must query
    dropped = wechat.admin.get("/wechat/notifications", params={"out_trade_no": "TOPUP-0001-DROP"}).json()
    assert [r["outcome"] for r in dropped] == ["DROPPED"]
    assert wechat.query("TOPUP-0001-DROP").json()["trade_state"] == "SUCCESS"
    assert len(receiver.received) == 4


def test_ignored_answers_are_retried_on_the_schedule_as_the_clock_advances(
        wechat: Wechat, receiver: Receiver, server: BankServer) -> None:
    patched = server.admin.patch("/profile", json={"wechat": {"notify": {"rules": [
        {"name": "platform answers are ignored", "match": {"out_trade_no": ".*-IGN"},
         "action": {"ignore_answer": True}}]}}})
    assert patched.status_code == 200, patched.text
    created(wechat, receiver, "TOPUP-0001-IGN")
    wechat.pay("TOPUP-0001-IGN")
    seen = []
    for step in ("1s", "15s", "15s", "28s", "1s", "3m"):
        wechat.advance(step)
        seen.append(len(receiver.received))
    # Attempts at +0, +15 s, +30 s, +60 s, +4 min: each arrives when the clock reaches it.
    assert seen == [1, 2, 3, 3, 4, 5]
    wechat.advance("1d")
    attempts = wechat.attempts("TOPUP-0001-IGN")
    assert len(attempts) == 16 and len(receiver.received) == 16
    assert {a["outcome"] for a in attempts} == {"IGNORED"} and {a["http_status"] for a in attempts} == {200}
    assert attempts[-1]["delivery_state"] == "exhausted"
    assert attempts[-1]["sent_at"] == "2026-01-06T09:04:00+08:00"
    assert len({r.body for r in receiver.received}) == 1  # the same notification every time


def test_a_failing_platform_gets_retries_until_it_answers(wechat: Wechat, receiver: Receiver) -> None:
    created(wechat, receiver, "TOPUP-0001")
    receiver.status = 500
    wechat.pay("TOPUP-0001")
    wechat.advance("20s")
    assert [(a["attempt"], a["outcome"], a["http_status"]) for a in wechat.attempts("TOPUP-0001")] == \
        [(1, "FAILED", 500), (2, "FAILED", 500)]
    receiver.status = 204
    wechat.advance("10s")
    assert [a["outcome"] for a in wechat.attempts("TOPUP-0001")] == ["FAILED", "FAILED", "SUCCESS"]
    wechat.advance("1d")
    assert len(receiver.received) == 3


def test_a_refused_connection_is_a_failure_and_retried(wechat: Wechat, receiver: Receiver) -> None:
    # A port nobody listens on: take one, close it.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/notify"
    assert wechat.create("TOPUP-0001", 100, dead).status_code == 200
    wechat.pay("TOPUP-0001")
    wechat.advance("16s")
    attempts = wechat.attempts("TOPUP-0001")
    assert [(a["outcome"], a["http_status"]) for a in attempts] == [("FAILED", None), ("FAILED", None)]
    assert attempts[0]["error"]


# -- bills and settlement ------------------------------------------------------------------------


def test_bill_availability_content_and_t_plus_1_settlement(
        wechat: Wechat, receiver: Receiver, server: BankServer) -> None:
    before = parse_yuan(server.admin.get(f"/accounts/{SUPERVISION}").json()["balance"])
    for name, total in (("TOPUP-0002", 5000), ("TOPUP-0001", 10000), ("TOPUP-0003", 750)):
        created(wechat, receiver, name, total)
    wechat.advance("1h")
    for name in ("TOPUP-0002", "TOPUP-0001", "TOPUP-0003"):
        wechat.pay(name)
    refund = server.admin.post("/wechat/orders/TOPUP-0002/refund", json={"amount": "20.00"})
    assert refund.status_code == 200 and refund.json()["out_refund_no"] == "TOPUP-0002-R1", refund.text
    tradebill = "/wechat/v3/bill/tradebill?bill_date=2026-01-05"
    v3_error(wechat.request("GET", tradebill), 400, "STATEMENT_CREATING")
    v3_error(wechat.request("GET", tradebill.replace("05", "07")), 400, "NO_STATEMENT_EXIST")
    v3_error(wechat.request("GET", tradebill.replace("01-05", "13-01")), 400, "PARAM_ERROR")
    answer = server.admin.post("/clock/advance", json={"to": "2026-01-06T08:59:59"})
    assert answer.status_code == 200
    v3_error(wechat.request("GET", tradebill), 400, "STATEMENT_CREATING")
    wechat.advance("1s")
    ready = wechat.request("GET", tradebill)
    assert ready.status_code == 200, ready.text
    info = ready.json()
    assert info["hash_type"] == "SHA1" and info["download_url"].startswith(server.url + "/wechat/v3/")
    path = info["download_url"][len(server.url):]
    download = wechat.request("GET", path)
    assert download.status_code == 200 and download.headers["content-type"] == "text/csv; charset=utf-8"
    assert hashlib.sha1(download.content).hexdigest() == info["hash_value"]
    bill = parse_bill(download.content)
    assert [(r.out_trade_no, r.trade_state) for r in bill.rows] == [
        ("TOPUP-0001", "SUCCESS"), ("TOPUP-0002", "SUCCESS"), ("TOPUP-0002", "REFUND"),
        ("TOPUP-0003", "SUCCESS")]
    assert {r.transaction_id for r in bill.rows} == {
        wechat.query(n).json()["transaction_id"] for n in ("TOPUP-0001", "TOPUP-0002", "TOPUP-0003")}
    s = bill.summary
    assert (s.count, s.order_total_fen, s.refund_fen, str(s.fee)) == (4, 15750, 2000, "0.95000")
    refunds = wechat.request("GET", "/wechat/v3/bill/tradebill?bill_date=2026-01-05&bill_type=REFUND")
    assert refunds.status_code == 200
    # Another merchant's key cannot use this download token.
    v3_error(_with(wechat, api_key=stranger_key()).request("GET", path), 401, "SIGN_ERROR")
    v3_error(wechat.request("GET", path.replace("ALL", "SUCCESS")), 400, "PARAM_ERROR")
    # Settlement at 10:00 on T+1: 157.50 - fees 0.95 (0.60 + 0.30 + 0.05) - refunds 20.00.
    assert server.admin.get("/wechat/settlements").json() == []
    wechat.advance("1h")
    (settled,) = server.admin.get("/wechat/settlements").json()
    assert (settled["bill_date"], settled["gross"], settled["fees"], settled["refunds"], settled["net"]) == \
        ("2026-01-05", "157.50", "0.95", "20.00", "136.55")
    account = server.admin.get(f"/accounts/{SUPERVISION}").json()
    assert parse_yuan(account["balance"]) == before + 13655
    assert account["postings"][0]["kind"] == "wechat_settlement"
    assert server.invariants()["ok"] is True
    orders = server.admin.get("/wechat/orders", params={"bill_date": "2026-01-05"}).json()
    # Paid at the same instant: in out_trade_no order, like the bill.
    assert [o["out_trade_no"] for o in orders] == ["TOPUP-0001", "TOPUP-0002", "TOPUP-0003"]


def test_accelerated_clock_sends_notifications_by_itself(
        wechat: Wechat, receiver: Receiver, server: BankServer) -> None:
    created(wechat, receiver, "TOPUP-0001")
    assert server.admin.put("/clock/mode", json={"mode": "accelerated:60"}).status_code == 200
    try:
        wechat.pay("TOPUP-0001")
        deadline = time.monotonic() + WAIT_S
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(receiver.received) == 1 and receiver.received[0].verified()
    finally:
        assert server.admin.put("/clock/mode", json={"mode": "manual"}).status_code == 200
