"""Batch processing at volume: a 1,000,000-record disbursement file (quick: 100,000).

Figures: records/s from upload complete to return file written, with every record posted
to the ledger, against the bare baseline of ``batch_worker.py`` in the same run; and the
bank's peak memory for that file (target < 300 MB: the engine streams, never loads).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from datetime import date
from pathlib import Path

from bench.common import ROOT, Context, Figure, check

NAME = "batches"
ACCOUNTS = 10_000
DAY = date(2026, 1, 5)


def _make_inputs(directory: Path, records: int) -> tuple[Path, Path]:
    from contracts.codec import FileWriter, load_layout
    from simulator.domain.identity import make_account_number

    names = ["张三", "李四", "王五", "赵六", "钱七"]
    accounts = [(make_account_number("623188", i, 1), names[i % len(names)]) for i in range(ACCOUNTS)]
    accounts_file = directory / "accounts.json"
    accounts_file.write_text(json.dumps(accounts, ensure_ascii=False), encoding="utf-8")
    path = directory / f"DF_DEMO01_{DAY:%Y%m%d}_1.txt"
    with open(path, "wb") as fh:
        writer = FileWriter(load_layout("disbursement_request"), fh)
        writer.write_header({"batch_no": "1", "business_date": DAY, "merchant": "DEMO01", "kind": "DF",
                             "record_count": records, "total_amount": records * 100,
                             "account_no": "98010078801000001"})
        for i in range(records):
            no, name = accounts[i % ACCOUNTS]
            writer.write_detail({"seq": i + 1, "serial": f"R{i + 1:09d}", "account_no": no,
                                 "account_name": name, "amount": 100, "memo": "充值到账"})
    return path, accounts_file


def _side(ctx: Context, side: str, file: Path, accounts: Path, state: Path) -> dict[str, float]:
    out = subprocess.run([ctx.python, "-m", "bench.batch_worker", side, str(file), str(accounts),
                          str(state)], cwd=ROOT, capture_output=True, text=True, timeout=1800,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{side} worker failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(ctx: Context) -> list[Figure]:
    if not ctx.selects(NAME, "throughput"):
        return []
    records = 100_000 if ctx.quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="banksim-bench-batches-") as tmp:
        directory = Path(tmp)
        file, accounts = _make_inputs(directory, records)
        ctx.log(f"{records:,} records, {file.stat().st_size / 1e6:.1f} MB file, {ACCOUNTS:,} accounts")
        base = _side(ctx, "baseline", file, accounts, directory / "baseline")
        bank = _side(ctx, "banksim", file, accounts, directory / "banksim")
    ctx.log(f"baseline: {base['seconds']:.2f} s, peak {base['peak_rss_mb']:.0f} MB")
    ctx.log(f"banksim: {bank['seconds']:.2f} s, peak {bank['peak_rss_mb']:.0f} MB, "
            f"{bank['success']:,} succeeded, return files {bank['return_files']}, "
            f"invariant violations {bank['violations']}")
    rate = records / bank["seconds"] if bank["success"] == records else None
    base_rate = records / base["seconds"]
    target, passed = check(rate, ">=", 100_000, "records/s")
    ratio_target, ratio_passed = check(None if rate is None else rate / base_rate, ">=", 0.5,
                                       subject="ratio")
    mem_target, mem_passed = check(bank["peak_rss_mb"], "<", 300, "MB")
    notes = f"upload complete -> return file written, {records:,} records, all posted"
    return [
        Figure(NAME, "records/s (intake+process+return)", rate, "records/s",
               "bare parse+INSERT+UPDATE records/s", base_rate, target=target, passed=passed,
               notes=notes),
        Figure(NAME, "records/s vs baseline", rate, "records/s", "bare baseline records/s", base_rate,
               target=ratio_target, passed=ratio_passed),
        Figure(NAME, "peak memory", bank["peak_rss_mb"], "MB", "baseline peak MB", base["peak_rss_mb"],
               target=mem_target, passed=mem_passed),
    ]
