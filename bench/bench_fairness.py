"""Real-time answers while a large batch runs: another platform's signed queries.

One ``banksim serve`` (``--clock manual``, two platforms: A with a funded 98 account and
N Class III accounts opened by signed requests, B with one), loopback, free ports.

1. Baseline, same run and server, no batch: B's signed ``GET /api/v1/accounts/{no}`` over
   C=2 keep-alive connections, Q queries.
2. A's disbursement file of R records (1,000,000; quick 100,000) is uploaded through the
   control API (``POST /_admin/files``: intake runs inside that call) while B keeps
   querying: the intake figures.
3. The clock is advanced past the processing delay (the advance answers once the batch
   is processed) while B keeps querying: the processing figures, B's p50/p99/max.
4. The clock is advanced past the return delay: the return file is written.

Figures: p50/p99/max of B's queries during processing and during intake, each beside the
baseline of step 1 (target: p99 <= 100 ms during processing); the batch's records/s
through the server (upload complete -> return file, the same span as ``batches``) beside
the bare baseline of ``batch_worker.py`` in the same run. Every load loop is bounded in
count and in wall time; the load average is in the notes.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from bench.bench_batches import _side
from bench.common import Context, Figure, check, free_port, start_server
from bench.loadgen import LoadResult, run_load
from bench.workload import (
    APP_ID,
    OPEN_PATH,
    banksim_exe,
    banksim_unavailable,
    http_request,
    opening_body,
    run_tag,
    signed_requests,
)
from contracts.signing import sign_headers
from simulator.config import load_profile

NAME = "fairness"
B_APP, B_SECRET = "other-platform", "bench-fairness-secret-b"
CONNECTIONS = 2


def _profile(path: Path) -> None:
    first = {**load_profile(None).as_dict()["platforms"][0], "supervision_opening_balance": "90000000.00"}
    second = {"app_id": B_APP, "secret": B_SECRET, "name": "另一出行平台", "merchant": "OTHER02",
              "supervision_account": "98010078801000002", "settlement_account": "31010078801000002"}
    # JSON is YAML. No record rules: every record is decided by the ledger, as in `batches`.
    path.write_text(json.dumps({"bank": {"open_active": True}, "platforms": [first, second],
                                "batches": {"rules": []}}), "utf-8")


def _b_queries(port: int, account_no: str, count: int) -> list[bytes]:
    path = f"/api/v1/accounts/{account_no}"
    return [http_request("GET", path, port, b"", sign_headers(B_APP, B_SECRET, "GET", path, b""))
            for _ in range(count)]


def _open_accounts(port: int, count: int, tag: str) -> list[tuple[str, str]]:
    result = run_load(port, signed_requests(OPEN_PATH, port, 0, count, tag), concurrency=16,
                      max_time_s=300, keep_bodies=True)
    accounts = []
    for index, item in enumerate(result.responses):
        if item is None or item[0] != 200:
            raise RuntimeError(f"opening {index} failed: {item}")
        accounts.append((str(json.loads(item[1])["data"]["account_no"]), opening_body(index, tag)["name"]))
    return accounts


def _batch_file(directory: Path, day: date, accounts: list[tuple[str, str]], records: int) -> Path:
    from contracts.codec import FileWriter, load_layout

    path = directory / f"DF_DEMO01_{day:%Y%m%d}_1.txt"
    with open(path, "wb") as fh:
        writer = FileWriter(load_layout("disbursement_request"), fh)
        writer.write_header({"batch_no": "1", "business_date": day, "merchant": "DEMO01", "kind": "DF",
                             "record_count": records, "total_amount": records * 100,
                             "account_no": "98010078801000001"})
        for i in range(records):
            no, name = accounts[i % len(accounts)]
            writer.write_detail({"seq": i + 1, "serial": f"R{i + 1:09d}", "account_no": no,
                                 "account_name": name, "amount": 100, "memo": "充值到账"})
    return path


def _during(port: int, queries: list[bytes], action: Any) -> tuple[LoadResult, float, Any]:
    """B's queries while ``action()`` runs in a thread; (queries, action seconds, its result)."""
    stop = threading.Event()
    out: dict[str, Any] = {}

    def run() -> None:
        t0 = time.perf_counter()
        try:
            out["result"] = action()
        finally:
            out["seconds"] = time.perf_counter() - t0
            stop.set()

    worker = threading.Thread(target=run)
    worker.start()
    load = run_load(port, queries, concurrency=CONNECTIONS, max_time_s=900, timeout_s=120, stop=stop)
    worker.join(timeout=900)
    if "seconds" not in out:
        raise RuntimeError("the batch step did not finish in 900 s")
    return load, float(out["seconds"]), out.get("result")


def _figures(label: str, load: LoadResult, base: LoadResult, target_p99: bool) -> list[Figure]:
    notes = f"B's signed account queries, C={CONNECTIONS}: {load.summary()}; no batch: {base.summary()}"
    p99_target, p99_passed = check(load.latency_ms(99) if load.completed else None, "<=", 100, "ms") \
        if target_p99 else ("", None)
    errors = load.errors
    return [
        Figure(NAME, f"query p50 during {label}", load.latency_ms(50), "ms", "same queries, no batch",
               base.latency_ms(50)),
        Figure(NAME, f"query p99 during {label}", load.latency_ms(99), "ms", "same queries, no batch",
               base.latency_ms(99), target=p99_target, passed=p99_passed, notes=notes),
        Figure(NAME, f"query max during {label}", load.max_ms, "ms", "same queries, no batch",
               base.max_ms),
        Figure(NAME, f"queries answered during {label}", float(load.completed), "queries",
               "errors", float(errors), target="errors == 0", passed=errors == 0),
    ]


def run(ctx: Context) -> list[Figure]:
    if not ctx.selects(NAME, "queries"):
        return []
    reason = banksim_unavailable()
    if reason:
        return [Figure(NAME, "query p99 during processing", None, "ms", "no batch", None, notes=reason)]
    records = 100_000 if ctx.quick else 1_000_000
    n_accounts = 2_000 if ctx.quick else 10_000
    load_avg = os.getloadavg()
    tag = run_tag()
    with tempfile.TemporaryDirectory(prefix="banksim-bench-fairness-") as tmp:
        directory = Path(tmp)
        profile = directory / "profile.yaml"
        _profile(profile)
        port = free_port()
        argv = [str(banksim_exe()), "serve", "--host", "127.0.0.1", "--http-port", str(port),
                "--sftp-port", "0", "--state-dir", str(directory / "state"), "--clock", "manual",
                "--profile", str(profile)]
        with start_server(argv, port) as server, \
                httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=900) as http:
            accounts = _open_accounts(port, n_accounts, tag)
            body = json.dumps({"request_serial": f"fair-b-{tag}", **{
                k: v for k, v in opening_body(n_accounts + 1, tag).items() if k != "request_serial"}},
                ensure_ascii=False).encode()
            opened = http.post(OPEN_PATH, content=body, headers={
                **sign_headers(B_APP, B_SECRET, "POST", OPEN_PATH, body), "Content-Type": "application/json"})
            b_account = str(opened.json()["data"]["account_no"])
            day = date.fromisoformat(http.get("/_admin/clock").json()["business_date"])
            file = _batch_file(directory, day, accounts, records)
            ctx.log(f"{records:,} records, {file.stat().st_size / 1e6:.1f} MB, {n_accounts:,} accounts; "
                    f"load average {load_avg[0]:.2f} {load_avg[1]:.2f} {load_avg[2]:.2f}")
            base = run_load(port, _b_queries(port, b_account, 3_000), concurrency=CONNECTIONS, max_time_s=60)
            ctx.log(f"no batch: {base.summary()}")
            data = file.read_bytes()
            cpu0 = server.cpu_seconds() or 0.0

            def upload() -> httpx.Response:
                # Read whole before the clock starts: the figure is the bank's, not the disk's.
                return http.post(f"/_admin/files/{APP_ID}/batches/{file.name}", content=data,
                                 headers={"content-type": "application/octet-stream"})

            intake, intake_s, answer = _during(port, _b_queries(port, b_account, 400_000), upload)
            if answer.status_code != 200 or not answer.json().get("accepted"):
                raise RuntimeError(f"upload refused: {answer.text[:500]}")
            ctx.log(f"intake {intake_s:.2f} s: {intake.summary()}")
            processing, process_s, advanced = _during(
                port, _b_queries(port, b_account, 400_000),
                lambda: http.post("/_admin/clock/advance", json={"by": "11m"}))
            advanced.raise_for_status()
            ctx.log(f"processing {process_s:.2f} s: {processing.summary()}")
            t0 = time.perf_counter()
            http.post("/_admin/clock/advance", json={"by": "15m"}).raise_for_status()
            return_s = time.perf_counter() - t0
            cpu = (server.cpu_seconds() or 0.0) - cpu0
            batch = http.get("/_admin/batches", params={"app_id": APP_ID}).json()[0]
            invariants = http.get("/_admin/invariants").json()
        accounts_file = directory / "accounts.json"
        accounts_file.write_text(json.dumps(accounts, ensure_ascii=False), "utf-8")
        bare = _side(ctx, "baseline", file, accounts_file, directory / "baseline")
    total_s = intake_s + process_s + return_s
    ok = batch["state"] == "RETURNED" and batch["processed_records"] == records and invariants["ok"]
    rate = records / total_s if ok else None
    base_rate = records / bare["seconds"]
    ctx.log(f"batch: intake {intake_s:.2f} s + processing {process_s:.2f} s + return {return_s:.2f} s, "
            f"server CPU {cpu:.1f} s, {batch['success_count']:,} succeeded, state {batch['state']}, "
            f"invariants ok {invariants['ok']}; bare baseline {bare['seconds']:.2f} s")
    ratio_target, ratio_passed = check(None if rate is None else rate / base_rate, ">=", 0.56,
                                       subject="ratio")
    load_note = f"load average at start {load_avg[0]:.2f} {load_avg[1]:.2f} {load_avg[2]:.2f}"
    return [
        *_figures("processing", processing, base, target_p99=True),
        *_figures("intake", intake, base, target_p99=False),
        Figure(NAME, "records/s through the server, B querying (upload -> return file)", rate, "records/s",
               "bare parse+INSERT+UPDATE records/s", base_rate, target=ratio_target, passed=ratio_passed,
               notes=f"processing alone {records / process_s:,.0f} records/s; {load_note}"),
    ]
