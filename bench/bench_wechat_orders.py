"""Signed WeChat Pay create-order (APIv3, SHA256withRSA) over loopback.

One ``banksim serve`` process answers N pre-built ``POST /v3/pay/transactions/native``
requests, each signed with the development merchant key (unique nonce, wall-clock
timestamp) over 32 keep-alive connections; every answer is itself RSA-signed by the
channel (that is the protocol: one RSA-2048 private-key operation per answer, plus one
public-key verification per request). The baseline app (same stack, trivial handler) answers
the openings workload's bodies in the same run with the same load generator. Every order
must come back HTTP 200 with a ``code_url``.
"""

from __future__ import annotations

import json

from bench.common import Context, Figure, ServerError, free_port, start_server
from bench.loadgen import LoadResult, run_load
from bench.workload import (
    BASELINE_PATH,
    banksim_argv,
    banksim_unavailable,
    baseline_argv,
    http_request,
    run_tag,
    signed_requests,
)

NAME = "wechat_orders"
CONCURRENCY = 32
PATH = "/v3/pay/transactions/native"


def order_requests(port: int, start: int, count: int, tag: str) -> list[bytes]:
    from contracts.wechat_dev_keys import APPID, MCHID
    from simulator.testing.wechat_keys import dev_sign

    out = []
    for i in range(start, start + count):
        body = json.dumps({"appid": APPID, "mchid": MCHID, "description": "余额充值",
                           "out_trade_no": f"B{tag}{i:08d}", "notify_url": "http://127.0.0.1:9/notify",
                           "amount": {"total": 100 + i % 1000, "currency": "CNY"}},
                          ensure_ascii=False, separators=(",", ":")).encode()
        out.append(http_request("POST", PATH, port, body,
                                {"Authorization": dev_sign("POST", PATH, body, nonce=f"b{tag}{i:010d}")}))
    return out


def _failures(responses: list[tuple[int, bytes] | None], marker: bytes) -> int:
    return sum(1 for r in responses if r is None or r[0] != 200 or marker not in r[1])


def _measure(ctx: Context, bank: bool, n: int, warm: int) -> tuple[LoadResult, float | None, int]:
    port = free_port()
    argv = banksim_argv(port) if bank else baseline_argv(port)
    tag = run_tag()
    build = order_requests if bank else (lambda p, s, c, t: signed_requests(BASELINE_PATH, p, s, c, t))
    warmup, requests = build(port, 0, warm, tag), build(port, warm, n, tag)
    with start_server(argv, port) as server:
        cap = 30.0 if ctx.quick else 120.0
        run_load(port, warmup, concurrency=CONCURRENCY, max_time_s=cap)
        cpu0 = server.cpu_seconds()
        result = run_load(port, requests, concurrency=CONCURRENCY, max_time_s=cap, keep_bodies=True)
        cpu1 = server.cpu_seconds()
    cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    failed = _failures(result.responses, b"code_url" if bank else b'"code":"0000"')
    ctx.log(f"{'banksim' if bank else 'baseline'}: {result.summary()}; failed {failed}")
    return result, cpu, failed


def run(ctx: Context) -> list[Figure]:
    if not ctx.selects(NAME, "throughput"):
        return []
    n, warm = (2000, 200) if ctx.quick else (10000, 500)
    base, base_cpu, _ = _measure(ctx, False, n, warm)
    unavailable = banksim_unavailable()
    if unavailable:
        return [Figure(NAME, "signed create-order/s", None, "req/s", "baseline app req/s",
                       base.completed / base.elapsed_s, None, "ratio >= 0.5", None, unavailable)]
    try:
        bank, bank_cpu, failed = _measure(ctx, True, n, warm)
    except ServerError as exc:
        return [Figure(NAME, "signed create-order/s", None, "req/s", "baseline app req/s",
                       base.completed / base.elapsed_s, None, "ratio >= 0.5", None,
                       str(exc).splitlines()[0])]
    rate = (len(bank.responses) - failed) / bank.elapsed_s
    base_rate = base.completed / base.elapsed_s
    ratio = Figure(NAME, "create-order/s vs baseline", rate, "req/s", "baseline app req/s", base_rate,
                   None, "ratio >= 0.5", None, f"N={n}, C={CONCURRENCY}, failed {failed}")
    if ratio.ratio is not None:
        ratio.passed = ratio.ratio >= 0.5 and failed == 0
    return [
        ratio,
        Figure(NAME, "server CPU per request", None if bank_cpu is None else 1e6 * bank_cpu / bank.completed,
               "µs", "baseline CPU per request",
               None if base_cpu is None else 1e6 * base_cpu / base.completed, None, "", None,
               "includes one RSA-2048 verification per request and one RSA-2048 signature "
               "per answer (the protocol's cost)"),
        Figure(NAME, "latency p50", bank.latency_ms(50), "ms", "baseline p50", base.latency_ms(50)),
    ]
