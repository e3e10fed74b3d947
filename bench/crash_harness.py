"""Crash-safety harness: SIGKILL a real `banksim serve` at random moments, restart, check.

Run it::

    .venv/bin/python -m bench.crash_harness [--kills N] [--seed S]

Each cycle a client thread feeds the server work (account openings and refunds with
recorded serials, deposits through the control API, disbursement batch files of a few
thousand records handed over through the control API, clock advances); the main thread
picks a kind of operation at random, waits until the client sends one, waits a random
0-1.5 s more and kills the server with SIGKILL. The server is restarted on the same state
directory and the harness checks what the README guarantees:

* ``GET /_admin/invariants`` is ok;
* every serial the client got an answer for still answers the same way (status and
  body, with ``X-Idempotent-Replay: true``), and never two different ways;
* every account's balance is deposits - refunds the client saw succeed + the successful
  disbursement records of the manifests (so no refund is paid twice, no deposit lost);
  the 98 account is its opening balance minus all successful disbursements;
* after advancing the clock 1 h, every batch the client saw accepted (or that
  ``/_admin/batches`` lists) is RETURNED, its manifest has exactly one result per record
  sent, its return file exists once under its final name, is complete (trailer line
  count) and matches the manifest, and a return file seen right after the restart was
  not changed afterwards;
* no pending job is overdue and the timeline shows each batch processed and returned
  once.

It prints one line per kill and finally ``N kills, N recovered, V violations`` (then the
violations); the exit status is 1 when there is any violation.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from contracts.codec import FileFormatError, FileReader, encode_file, load_layout, return_file_name
from contracts.money import format_fen, parse_yuan
from contracts.signing import sign_headers
from simulator.config import load_profile
from simulator.domain.identity import make_card_number, make_id_number

ROOT = Path(__file__).resolve().parents[1]
APP = "demo-platform"
SECRET = "banksim-dev-secret"
MERCHANT = "DEMO01"
SUPERVISION = "98010078801000001"
OPENING_BALANCE = "1000000.00"
READY_TIMEOUT_S = 30.0
HTTP_TIMEOUT_S = 60.0
TARGET_WAIT_S = 8.0
KINDS = ("open", "deposit", "refund", "upload", "advance")
WEIGHTS = (3, 2, 3, 1, 2)
ADVANCES = ("3m", "7m", "11m", "16m", "26m")

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平"


def identity(n: int) -> dict[str, str]:
    """Five valid elements for person ``n`` (distinct n, distinct ID numbers and names)."""
    born = date(1970, 1, 1) + timedelta(days=n // 1000)
    return {
        "name": _SURNAMES[n % 20] + _GIVEN[(n // 20) % 20] + _GIVEN[(n // 400) % 20],
        "id_number": make_id_number("310101", born, n % 1000),
        "mobile": f"138{n % 10**8:08d}",
        "bound_card_number": make_card_number("622202", 19, n),
        "bound_card_kind": "DEBIT_I",
    }


def write_profile(path: Path) -> None:
    platform = load_profile(None).as_dict()["platforms"][0]
    platform["supervision_opening_balance"] = OPENING_BALANCE
    profile = {"bank": {"open_active": True}, "platforms": [platform]}
    path.write_text(json.dumps(profile, ensure_ascii=False, indent=1), "utf-8")  # JSON is YAML


# -- the server ---------------------------------------------------------------------------


class Server:
    """`banksim serve` on one state directory, started and SIGKILLed again and again."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.state_dir = workdir / "state"
        self.profile = workdir / "profile.yaml"
        self.port_file = workdir / "port.json"
        self.log_path = workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        write_profile(self.profile)

    def start(self) -> None:
        self.port_file.unlink(missing_ok=True)
        args = [sys.executable, "-m", "simulator.cli", "serve", "--host", "127.0.0.1",
                "--http-port", "0", "--sftp-port", "0", "--port-file", str(self.port_file),
                "--state-dir", str(self.state_dir), "--profile", str(self.profile)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("BANKSIM_")}
        env["PYTHONUNBUFFERED"] = "1"
        with self.log_path.open("ab") as log:
            log.write(f"\n==== start {time.strftime('%H:%M:%S')} ====\n".encode())
            log.flush()
            self.process = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                self.url = str(json.loads(self.port_file.read_text("utf-8"))["url"])
                break
            except (FileNotFoundError, ValueError, KeyError):
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"banksim serve exited with {self.process.returncode}; "
                                   f"log: {self.log_path}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"banksim serve not ready after {READY_TIMEOUT_S} s; "
                                   f"log: {self.log_path}")
            time.sleep(0.01)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def returns_dir(self) -> Path:
        return self.state_dir / "sftp" / APP / "download" / "returns"


# -- what the client knows -----------------------------------------------------------------


@dataclass
class Answered:
    """A mutating request and the answer the client got for it."""

    path: str
    body: dict[str, Any]
    status: int
    answer: dict[str, Any]


@dataclass
class Account:
    name: str
    deposits: int = 0  # fen the client saw deposited (control API answered 200)
    refunds: int = 0  # fen the client saw refunded (200)


@dataclass
class SentBatch:
    batch_no: str
    name: str
    records: list[tuple[str, str, str, int]]  # serial, account_no, account_name, fen
    acked: bool = False  # the upload answer said accepted


@dataclass
class VerifiedBatch:
    summary: tuple[Any, ...]
    success_fen: int
    per_account: dict[str, int]
    file_sha: str


@dataclass
class Op:
    kind: str
    path: str = ""
    body: dict[str, Any] = field(default_factory=dict)
    content: bytes = b""
    account: str = ""
    fen: int = 0
    memo: str = ""
    batch: SentBatch | None = None


class Harness:
    def __init__(self, workdir: Path, seed: int, *, records: tuple[int, int] = (2000, 4000),
                 max_delay: float = 1.5, log: Any = print) -> None:
        self.rng = random.Random(seed)
        self.server = Server(workdir)
        self.records = records
        self.max_delay = max_delay
        self.log = log
        self.http: httpx.Client | None = None
        self.answered: dict[str, Answered] = {}  # serial -> the first answer
        self.unreplayed: list[str] = []  # serials answered since the last check
        self.accounts: dict[str, Account] = {}
        self.batches: dict[str, SentBatch] = {}
        self.verified: dict[str, VerifiedBatch] = {}
        self.next_person = 0
        self.next_batch = 1
        self.next_refund = 0
        self.next_deposit = 0
        self.inflight: Op | None = None
        self.violations: list[str] = []
        self.kills = 0
        self.recovered = 0
        self.sent_kind = {k: threading.Event() for k in KINDS}
        self.rejected: list[str] = []
        self.notes: list[str] = []  # recovery gaps that break no guarantee of the README
        self.premature: dict[str, str] = {}  # return file -> batch state, after a restart

    # -- HTTP ----------------------------------------------------------------------------

    def connect(self) -> None:
        if self.http is not None:
            self.http.close()
        self.http = httpx.Client(base_url=self.server.url, timeout=HTTP_TIMEOUT_S)

    def signed(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        assert self.http is not None
        data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        headers = sign_headers(APP, SECRET, method, path, data)
        if data:
            headers["Content-Type"] = "application/json"
        return self.http.request(method, path, content=data, headers=headers)

    def admin(self, method: str, path: str, body: Any = None, *, content: bytes | None = None,
              params: dict[str, Any] | None = None) -> Any:
        assert self.http is not None
        if content is not None:
            r = self.http.request(method, "/_admin" + path, content=content, params=params,
                                  headers={"Content-Type": "application/octet-stream"})
        else:
            r = self.http.request(method, "/_admin" + path, json=body, params=params)
        if r.status_code != 200:
            raise AdminError(method, path, r.status_code, r.text)
        return r.json()

    def violation(self, text: str) -> None:
        self.violations.append(f"[kill {self.kills}] {text}")
        self.log(f"  VIOLATION: {text}")

    # -- the workload ----------------------------------------------------------------------

    def prepare(self, kind: str) -> Op | None:
        """Build the next operation of ``kind`` (None: nothing sensible to do right now)."""
        funded = [a for a, acc in self.accounts.items() if self.estimate(a) >= 100]
        if kind == "open" or not self.accounts:
            n = self.next_person
            self.next_person += 1
            serial = f"CRASH-OPEN-{n}"
            return Op("open", "/api/v1/accounts/open", {"request_serial": serial, **identity(n)})
        if kind == "deposit":
            candidates = [a for a in self.accounts if self.estimate(a) < 150_000]
            if not candidates:
                return None
            self.next_deposit += 1
            fen = self.rng.randint(20, 100) * 100
            acc = self.rng.choice(candidates)
            return Op("deposit", account=acc, fen=fen, memo=f"CRASH-DEP-{self.next_deposit}")
        if kind == "refund":
            if not funded:
                return None
            self.next_refund += 1
            acc = self.rng.choice(funded)
            fen = self.rng.randint(1, min(20, self.estimate(acc) // 100)) * 100
            serial = f"CRASH-RF-{self.next_refund}"
            return Op("refund", "/api/v1/refunds", {"request_serial": serial, "account_no": acc,
                                                   "amount": format_fen(fen)}, account=acc, fen=fen)
        if kind == "upload":
            return self.build_batch()
        return Op("advance", body={"by": self.rng.choice(ADVANCES)})

    def estimate(self, account_no: str) -> int:
        acc = self.accounts[account_no]
        disb = sum(v.per_account.get(account_no, 0) for v in self.verified.values())
        return acc.deposits - acc.refunds + disb

    def build_batch(self) -> Op:
        while True:
            no = self.next_batch
            self.next_batch += 1
            if not str(no).endswith("8") or len(str(no)) < 4:  # 9xx8: the "late" magic value
                break
        day = date.fromisoformat(self.admin("GET", "/clock")["business_date"])
        people = list(self.accounts.items())
        count = self.rng.randint(*self.records)
        records = []
        for seq in range(1, count + 1):
            acc, info = self.rng.choice(people)
            records.append((f"CRASH-B{no}-{seq}", acc, info.name, self.rng.randint(1, 50)))
        header = {"batch_no": str(no), "business_date": day, "merchant": MERCHANT, "kind": "DF",
                  "record_count": count, "total_amount": sum(r[3] for r in records),
                  "account_no": SUPERVISION}
        details = [{"seq": i, "serial": s, "account_no": a, "account_name": nm, "amount": f,
                    "memo": "充值到账"} for i, (s, a, nm, f) in enumerate(records, 1)]
        name = f"DF_{MERCHANT}_{day:%Y%m%d}_{no}.txt"
        data = encode_file(load_layout("disbursement_request"), header, details)
        batch = SentBatch(str(no), name, records)
        return Op("upload", f"/files/{APP}/batches/{name}", content=data, batch=batch)

    def perform(self, op: Op) -> None:
        """Send ``op`` and record what the answer says; transport errors propagate."""
        if op.kind in ("open", "refund"):
            r = self.signed("POST", op.path, op.body)
            self.record_answer(op.path, op.body, r)
            if r.status_code == 200 and op.kind == "open":
                self.accounts[r.json()["data"]["account_no"]] = Account(op.body["name"])
            elif r.status_code == 200:
                self.accounts[op.account].refunds += op.fen
        elif op.kind == "deposit":
            assert self.http is not None
            r = self.http.post(f"/_admin/accounts/{op.account}/deposit",
                               json={"amount": format_fen(op.fen), "memo": op.memo})
            if r.status_code == 200:
                self.accounts[op.account].deposits += op.fen
        elif op.kind == "upload":
            assert op.batch is not None
            self.batches[op.batch.batch_no] = op.batch
            answer = self.admin("POST", op.path, content=op.content)
            if answer.get("accepted"):
                op.batch.acked = True
            else:
                del self.batches[op.batch.batch_no]
                self.rejected.append(f"{op.batch.name}: {answer}")
                self.log(f"  note: batch {op.batch.name} refused: {answer}")
        else:
            self.admin("POST", "/clock/advance", op.body)

    def record_answer(self, path: str, body: dict[str, Any], r: httpx.Response) -> None:
        serial = body["request_serial"]
        got = r.json()
        first = self.answered.get(serial)
        if first is None:
            self.answered[serial] = Answered(path, body, r.status_code, got)
            self.unreplayed.append(serial)
        elif (first.status, first.answer) != (r.status_code, got):
            self.violation(f"serial {serial} answered two ways: {first.status} {first.answer} "
                           f"then {r.status_code} {got}")

    def workload(self, stop: threading.Event) -> None:
        """The client thread: random operations until the server dies (or ``stop``)."""
        try:
            while not stop.is_set():
                kind = self.rng.choices(KINDS, WEIGHTS)[0]
                op = self.prepare(kind)
                if op is None:
                    continue
                self.inflight = op
                self.sent_kind[op.kind].set()
                self.perform(op)
                self.inflight = None
        except (httpx.TransportError, AdminError):
            return  # the server was killed: ``inflight`` is resolved after the restart

    # -- a kill cycle -----------------------------------------------------------------------

    def cycle(self, index: int, total: int) -> None:
        target = self.rng.choice(KINDS)
        delay = self.rng.uniform(0, self.max_delay)
        for event in self.sent_kind.values():
            event.clear()
        stop = threading.Event()
        worker = threading.Thread(target=self.workload, args=(stop,), daemon=True)
        worker.start()
        self.sent_kind[target].wait(TARGET_WAIT_S)
        time.sleep(delay)
        inflight = self.inflight.kind if self.inflight else "-"
        self.server.kill()
        self.kills += 1
        worker.join(HTTP_TIMEOUT_S + 5)
        stop.set()
        if worker.is_alive():
            self.violation("the client thread did not notice the kill")
        started = time.monotonic()
        try:
            self.server.start()
        except RuntimeError as exc:
            self.violation(f"restart failed: {exc}")
            return
        self.connect()
        try:
            self.resolve()
            self.check()
        except (httpx.HTTPError, AdminError) as exc:
            self.violation(f"checks after restart failed: {type(exc).__name__}: {exc}")
            return
        self.recovered += 1
        self.log(f"kill {index}/{total}: {target} sent, +{delay:.2f}s, in flight {inflight}; "
                 f"recovered and checked in {time.monotonic() - started:.1f}s; "
                 f"{len(self.accounts)} accounts, {len(self.batches)} batches "
                 f"({sum(len(b.records) for b in self.batches.values())} records), "
                 f"{len(self.answered)} serials, {len(self.violations)} violations")

    def resolve(self) -> None:
        """Settle the operation the kill interrupted, as a platform would after an outage."""
        op, self.inflight = self.inflight, None
        if op is None:
            return
        if op.kind in ("open", "refund"):
            # Retry with the same serial: it either replays the committed answer or runs now.
            self.perform(op)
        elif op.kind == "deposit":
            postings = self.admin("GET", f"/accounts/{op.account}")["postings"]
            if any(p["memo"] == op.memo for p in postings):
                self.accounts[op.account].deposits += op.fen
        elif op.kind == "upload":
            assert op.batch is not None
            known = {b["batch_no"] for b in self.admin("GET", "/batches", params={"app_id": APP})}
            if op.batch.batch_no not in known:
                self.batches.pop(op.batch.batch_no, None)
                stranded = self.server.state_dir / "sftp" / APP / "upload" / "batches" / op.batch.name
                if stranded.exists():
                    # Never taken in, never rejected, and a re-send under the same name is
                    # refused: the platform hears nothing about this file, ever.
                    try:
                        self.admin("POST", op.path, content=op.content)
                        again = "the re-send was taken"
                    except AdminError as exc:
                        again = f"the re-send is refused ({exc})"
                    self.notes.append(f"[kill {self.kills}] {op.batch.name}: upload interrupted "
                                      f"after the file reached its final name; no batch, no "
                                      f"rejection; {again}")

    # -- the checks -----------------------------------------------------------------------

    def check(self, *, full: bool = False) -> None:
        inv = self.admin("GET", "/invariants")
        if inv.get("ok") is not True:
            self.violation(f"invariants after restart: {inv.get('violations')}")
        # What a platform polling download/returns could already have read.
        seen_files = {p.name: _sha(p) for p in self.server.returns_dir.glob("*.txt")}
        self.premature = {}
        self.check_replays(full=full)
        self.probe_premature_returns(seen_files)
        # Some business after the restart, before the clock moves again.
        for kind in ("refund", "deposit"):
            op = self.prepare(kind)
            if op is not None:
                self.perform(op)
        self.admin("POST", "/clock/advance", {"by": "1h"})
        self.check_batches(seen_files, full=full)
        self.check_balances()
        self.check_jobs_and_events()
        inv = self.admin("GET", "/invariants")
        if inv.get("ok") is not True:
            self.violation(f"invariants after the advance: {inv.get('violations')}")

    def probe_premature_returns(self, seen_files: dict[str, str]) -> None:
        """A return file visible after the restart for a batch the bank has not processed.

        The job that wrote it was rolled back by the kill; the file says what that run
        decided. The bank's answer to a retry must be the same file, so the platform may
        keep acting normally in between: here a customer tops an account of that batch up
        to the Class III cap, which a re-run that decides again will see.
        """
        listed = {b["batch_no"]: b for b in self.admin("GET", "/batches", params={"app_id": APP})}
        for batch in list(self.batches.values()):
            name = return_file_name(batch.name)
            view = listed.get(batch.batch_no)
            if name not in seen_files or view is None or view["state"] == "RETURNED":
                continue
            self.premature[name] = view["state"]
            self.notes.append(f"[kill {self.kills}] {name} visible under its final name after "
                              f"the restart while batch {batch.batch_no} is {view['state']}")
            if view["state"] != "ACCEPTED":
                continue
            with (self.server.returns_dir / name).open("rb") as fh:
                paid = [d["account_no"] for _, d in FileReader(load_layout("return"), fh)
                        if d["result"] == "S" and d["account_no"] in self.accounts]
            if not paid:
                continue
            acc = paid[0]
            room = parse_yuan("2000.00") - _fen(self.admin("GET", f"/accounts/{acc}")["balance"])
            if room > 0:
                self.next_deposit += 1
                self.perform(Op("deposit", account=acc, fen=room,
                                memo=f"CRASH-DEP-{self.next_deposit}"))
                self.log(f"  probe: {name} says account {acc} was paid; it is topped up to the "
                         f"cap before the re-run")

    def check_replays(self, *, full: bool) -> None:
        older = [s for s in self.answered if s not in set(self.unreplayed)]
        serials = older if full else self.rng.sample(older, min(20, len(older)))
        for serial in [*self.unreplayed, *serials]:
            a = self.answered[serial]
            r = self.signed("POST", a.path, a.body)
            got = r.json()
            if (r.status_code, got) != (a.status, a.answer):
                self.violation(f"serial {serial}: answered {a.status} {a.answer}, replay after "
                               f"restart {r.status_code} {got}")
            elif a.status == 200 and r.headers.get("X-Idempotent-Replay") != "true":
                self.violation(f"serial {serial}: replay without X-Idempotent-Replay: true")
        self.unreplayed = []

    def check_batches(self, seen_files: dict[str, str], *, full: bool) -> None:
        listed = {b["batch_no"]: b for b in self.admin("GET", "/batches", params={"app_id": APP})}
        for no, batch in self.batches.items():
            if no not in listed:
                if batch.acked:
                    self.violation(f"batch {no} was accepted ({batch.name}) but is gone")
                continue
            view = listed[no]
            if view["state"] != "RETURNED":
                self.violation(f"batch {no}: state {view['state']} one hour after the last "
                               f"advance (want RETURNED)")
                continue
            summary = _summary(view)
            done = self.verified.get(no)
            if done is not None and not full:
                path = self.server.returns_dir / return_file_name(batch.name)
                if summary != done.summary:
                    self.violation(f"batch {no} changed after it was returned: "
                                   f"{done.summary} -> {summary}")
                elif not path.exists() or _sha(path) != done.file_sha:
                    self.violation(f"return file of batch {no} changed or vanished after "
                                   f"it was verified")
                continue
            verified = self.verify_batch(batch, summary)
            if verified is not None:
                self.verified[no] = verified
        for no in listed.keys() - self.batches.keys():
            self.violation(f"/_admin/batches lists batch {no} the client never sent")
        expected = {return_file_name(b.name) for b in self.batches.values()}
        present = {p.name for p in self.server.returns_dir.iterdir() if not p.name.startswith(".")}
        for name in sorted(present - expected):
            self.violation(f"unexpected file in download/returns: {name}")
        for name, sha in seen_files.items():
            path = self.server.returns_dir / name
            if not path.exists():
                self.violation(f"return file {name} visible after the restart has vanished")
            elif _sha(path) != sha:
                self.violation(f"return file {name} visible under its final name after the "
                               f"restart (batch {self.premature.get(name, 'RETURNED')} in the "
                               f"bank's state) was rewritten with different bytes by the "
                               f"recovery: the bank published a file for work it had not "
                               f"committed")

    def verify_batch(self, batch: SentBatch, summary: tuple[Any, ...]) -> VerifiedBatch | None:
        no = batch.batch_no
        m = self.admin("GET", f"/batches/{APP}/{no}")
        recs = m["records"]
        bad = len(self.violations)
        if [r["seq"] for r in recs] != list(range(1, len(batch.records) + 1)):
            seqs = Counter(r["seq"] for r in recs)
            self.violation(f"batch {no}: manifest has {len(recs)} results for "
                           f"{len(batch.records)} records (repeated seqs: "
                           f"{[s for s, c in seqs.items() if c > 1][:5]})")
            return None
        per_account: dict[str, int] = defaultdict(int)
        success = 0
        for r, (serial, acc, name, fen) in zip(recs, batch.records, strict=True):
            if (r["serial"], r["account_no"], r["account_name"], parse_yuan(r["amount"])) != (
                    serial, acc, name, fen):
                self.violation(f"batch {no} seq {r['seq']}: manifest {r} is not the record sent")
                return None
            if r["result"] not in ("S", "F") or (r["result"] == "S") != (r["code"] == "0000"):
                self.violation(f"batch {no} seq {r['seq']}: result {r['result']} code {r['code']}")
            if r["result"] == "S":
                per_account[acc] += fen
                success += fen
        n_ok = sum(1 for r in recs if r["result"] == "S")
        if (m["success_count"], parse_yuan(m["success_amount"])) != (n_ok, success):
            self.violation(f"batch {no}: summary {m['success_count']}/{m['success_amount']} but "
                           f"records say {n_ok}/{format_fen(success)}")
        name = return_file_name(batch.name)
        if m["return_files"] != [name]:
            self.violation(f"batch {no}: return_files {m['return_files']}, want [{name}]")
        path = self.server.returns_dir / name
        if not path.exists():
            self.violation(f"batch {no}: return file {name} missing")
            return None
        try:
            with path.open("rb") as fh:
                reader = FileReader(load_layout("return"), fh)
                details = [v for _, v in reader]
                header, trailer = reader.header, reader.trailer
        except FileFormatError as exc:
            self.violation(f"batch {no}: return file {name} incomplete or malformed: {exc}")
            return None
        if trailer is None or trailer["line_count"] != len(details) + 2:
            self.violation(f"batch {no}: return file {name} has no valid trailer")
        got = [(d["seq"], d["serial"], d["account_no"], d["amount"], d["result"], d["code"],
                d["bank_serial"]) for d in details]
        want = [(r["seq"], r["serial"], r["account_no"], parse_yuan(r["amount"]), r["result"],
                 r["code"], r["bank_serial"]) for r in recs]
        if got != want:
            diff = next((i for i, (g, w) in enumerate(zip(got, want, strict=False)) if g != w),
                        min(len(got), len(want)))
            self.violation(f"batch {no}: return file ({len(got)} lines) differs from the "
                           f"manifest ({len(want)}) from record {diff + 1}")
        if (header["record_count"], header["success_count"], header["success_amount"]) != (
                len(recs), n_ok, success):
            self.violation(f"batch {no}: return header {header} does not match the manifest")
        if len(self.violations) != bad:
            return None
        return VerifiedBatch(summary, success, dict(per_account), _sha(path))

    def check_balances(self) -> None:
        rows = self.admin("GET", "/accounts", params={"limit": 10_000})
        balances = {r["account_no"]: _fen(r["balance"]) for r in rows}
        class_iii = {r["account_no"] for r in rows if r["account_class"] == "III"}
        for acc in sorted(class_iii - self.accounts.keys()):
            self.violation(f"account {acc} exists but no opening the client knows made it")
        all_verified = all(no in self.verified for no in self.batches)
        for acc_no in sorted(self.accounts):
            if acc_no not in balances:
                self.violation(f"account {acc_no} (opening answered 200) is gone")
                continue
            if not all_verified:
                continue
            acc = self.accounts[acc_no]
            disb = sum(v.per_account.get(acc_no, 0) for v in self.verified.values())
            want = acc.deposits - acc.refunds + disb
            if balances[acc_no] != want:
                self.violation(f"account {acc_no}: balance {format_fen(balances[acc_no])}, want "
                               f"deposits {format_fen(acc.deposits)} - refunds "
                               f"{format_fen(acc.refunds)} + disbursed {format_fen(disb)} = "
                               f"{format_fen(want)}")
        if all_verified:
            paid = sum(v.success_fen for v in self.verified.values())
            want = parse_yuan(OPENING_BALANCE) - paid
            if balances.get(SUPERVISION) != want:
                self.violation(f"98 account: balance {format_fen(balances.get(SUPERVISION, 0))}, "
                               f"want {OPENING_BALANCE} - {format_fen(paid)} = {format_fen(want)}")

    def check_jobs_and_events(self) -> None:
        now_dt = datetime.fromisoformat(self.admin("GET", "/clock")["now"])
        for job in self.admin("GET", "/jobs"):
            if datetime.fromisoformat(job["due_at"]) <= now_dt:
                self.violation(f"job {job['id']} ({job['kind']}) still pending, due {job['due_at']}")
        for kind in ("batch.processed", "batch.returned", "batch.accepted"):
            counts = Counter(e["ref"] for e in self.events(kind))
            for no in self.batches:
                if counts.get(no, 0) != 1:
                    self.violation(f"batch {no}: {counts.get(no, 0)} {kind} events (want 1)")

    def events(self, kind: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        since = 0
        while True:
            page = self.admin("GET", "/events", params={"kind": kind, "since_id": since,
                                                         "limit": 10_000})
            found += page
            if len(page) < 10_000:
                return found
            since = page[-1]["id"]

    # -- the whole run ----------------------------------------------------------------------

    def run(self, kills: int) -> None:
        self.server.start()
        self.connect()
        try:
            for _ in range(4):
                op = self.prepare("open")
                assert op is not None
                self.perform(op)
            for index in range(1, kills + 1):
                self.cycle(index, kills)
                if self.server.process is None or self.server.process.poll() is not None:
                    break  # a restart failed: nothing more to learn from this state
            if self.server.process is not None and self.server.process.poll() is None:
                try:
                    self.check(full=True)
                except (httpx.HTTPError, AdminError) as exc:
                    self.violation(f"final checks failed: {type(exc).__name__}: {exc}")
        finally:
            if self.http is not None:
                self.http.close()
            self.server.stop()


class AdminError(Exception):
    def __init__(self, method: str, path: str, status: int, text: str) -> None:
        super().__init__(f"{method} /_admin{path}: {status} {text[:300]}")


def _fen(text: str) -> int:
    return -parse_yuan(text[1:]) if text.startswith("-") else parse_yuan(text)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _summary(view: dict[str, Any]) -> tuple[Any, ...]:
    return (view["state"], view["record_count"], view["total"], view["success_count"],
            view["success_amount"], view["processed_at"], view["returned_at"],
            tuple(view["return_files"]))


def run_harness(kills: int, seed: int, workdir: Path | None = None, *,
                records: tuple[int, int] = (2000, 4000), max_delay: float = 1.5,
                log: Any = print) -> Harness:
    """Run ``kills`` kill cycles; the returned harness holds kills, recovered, violations."""
    own = workdir is None
    root = Path(tempfile.mkdtemp(prefix="banksim-crash-")) if workdir is None else workdir
    harness = Harness(root, seed, records=records, max_delay=max_delay, log=log)
    try:
        harness.run(kills)
    except Exception as exc:  # the harness itself must report, not crash
        harness.violation(f"harness error: {type(exc).__name__}: {exc}")
    if own and not harness.violations:
        shutil.rmtree(root, ignore_errors=True)
    elif harness.violations:
        log(f"state and server log kept in {root}")
    return harness


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.crash_harness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the state and server log go (default: a temp dir)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print(f"crash harness: {args.kills} kills, seed {seed}", flush=True)
    started = time.monotonic()
    h = run_harness(args.kills, seed, args.workdir, log=lambda s: print(s, flush=True))
    print(f"({time.monotonic() - started:.0f} s)")
    print(f"{h.kills} kills, {h.recovered} recovered, {len(h.violations)} violations")
    for v in h.violations:
        print(f"  {v}")
    if h.notes or h.rejected:
        print(f"notes ({len(h.notes)}):")
        for n in [*h.notes, *h.rejected]:
            print(f"  {n}")
    return 1 if h.violations or h.recovered != h.kills else 0


if __name__ == "__main__":
    sys.exit(main())
