"""Crash safety, the CI-sized run of ``bench/crash_harness.py``.

A real `banksim serve` on one state directory is SIGKILLed eight times at random moments
(a random real delay after a random kind of operation: intake of a batch file, a batch
being processed or its return file written during a clock advance, openings, refunds,
deposits), restarted, and checked each time: invariants, every answered serial replays
the same answer, balances equal what the client saw succeed plus the manifests, every
accepted batch processed and returned exactly once with a complete return file that
matches its manifest, no job lost or repeated. Business delays are never waited out: the
harness advances the virtual clock.

The second test is the deterministic reproduction of what the harness found: a return file
becomes readable under its final name before the job that wrote it is committed (group
commit), so a kill at that moment leaves the platform a file for work the bank rolled back,
and the re-run writes a different one.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.crash_harness import APP, Harness, run_harness
from contracts.codec import decode_file, encode_file, load_layout, return_file_name
from contracts.money import format_fen, parse_yuan

pytestmark = pytest.mark.network

KILLS = 8


def test_sigkill_at_random_moments_loses_and_repeats_nothing(tmp_path: Path) -> None:
    lines: list[str] = []
    harness = run_harness(KILLS, seed=20260105, workdir=tmp_path, records=(300, 900),
                          max_delay=0.5, log=lines.append)
    report = "\n".join(lines)
    assert harness.violations == [], f"{len(harness.violations)} violations:\n{report}"
    assert (harness.kills, harness.recovered) == (KILLS, KILLS), report
    assert len(harness.batches) > 0 and len(harness.answered) > 0, report


def test_a_return_file_the_platform_can_read_never_changes(tmp_path: Path) -> None:
    """Kill the server the moment a return file appears, then let the platform carry on.

    One clock advance runs the jobs of two batches: A (small) and B (large, so writing its
    return file keeps the group transaction open for a while). The server is killed as
    soon as A's return file is visible in download/returns. Whatever a platform can read
    there is the bank's word on the batch: it must describe committed work, so after the
    restart and a normal top-up of one of A's accounts the file must still say the same.
    """
    h = Harness(tmp_path, seed=1, log=lambda _: None)
    server = h.server
    server.start()
    h.connect()
    try:
        x, y = (_open(h) for _ in range(2))
        name_a = _upload(h, [(x, 100)] * 50)
        _upload(h, [(y, 1)] * 40_000)
        returned_a = server.returns_dir / return_file_name(name_a)
        assert h.http is not None
        advance = threading.Thread(target=_quietly, args=(h.http.post, "/_admin/clock/advance"),
                                   kwargs={"json": {"by": "30m"}}, daemon=True)
        advance.start()
        deadline = time.monotonic() + 60
        while not returned_a.exists() and time.monotonic() < deadline:
            time.sleep(0.001)
        server.kill()
        advance.join(30)
        assert returned_a.exists(), "A's return file never appeared"
        seen = returned_a.read_bytes()
        server.start()
        h.connect()
        state = h.admin("GET", f"/batches/{APP}/{name_a.rsplit('_', 1)[1][:-4]}")["state"]
        # The platform's customer tops X up to the Class III cap; then the clock moves on.
        balance = parse_yuan(h.admin("GET", f"/accounts/{x}")["balance"])
        h.admin("POST", f"/accounts/{x}/deposit", {"amount": format_fen(200_000 - balance)})
        h.admin("POST", "/clock/advance", {"by": "1h"})
        after = returned_a.read_bytes()
        assert after == seen, (
            f"{returned_a.name} was readable under its final name before the bank committed "
            f"the batch (state after the restart: {state}); the re-run wrote different "
            f"results:\n before: {_details(seen)[:2]}\n after:  {_details(after)[:2]}")
    finally:
        if h.http is not None:
            h.http.close()
        server.stop()


def _quietly(call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    with contextlib.suppress(httpx.HTTPError):
        call(*args, **kwargs)


def _open(h: Harness) -> str:
    op = h.prepare("open")
    assert op is not None
    h.perform(op)
    return list(h.accounts)[-1]


def _upload(h: Harness, records: list[tuple[str, int]]) -> str:
    """A disbursement batch of ``(account_no, fen)`` records; returns its file name."""
    h.next_batch += 1
    no = h.next_batch
    day = date.fromisoformat(h.admin("GET", "/clock")["business_date"])
    details = [{"seq": i, "serial": f"R{no}-{i}", "account_no": acc,
                "account_name": h.accounts[acc].name, "amount": fen, "memo": ""}
               for i, (acc, fen) in enumerate(records, 1)]
    header = {"batch_no": str(no), "business_date": day, "merchant": "DEMO01", "kind": "DF",
              "record_count": len(details), "total_amount": sum(f for _, f in records),
              "account_no": "98010078801000001"}
    name = f"DF_DEMO01_{day:%Y%m%d}_{no}.txt"
    answer = h.admin("POST", f"/files/{APP}/batches/{name}",
                     content=encode_file(load_layout("disbursement_request"), header, details))
    assert answer["accepted"] is True, answer
    return name


def _details(data: bytes) -> list[tuple[Any, ...]]:
    parsed = decode_file(load_layout("return"), data)
    return [(d["seq"], d["account_no"], d["amount"], d["result"], d["code"]) for d in parsed.details]
