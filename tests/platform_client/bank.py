"""A real ``banksim serve`` for the platform client's integration tests, and scenario helpers.

The server is started as a subprocess on free loopback ports (``--http-port 0
--sftp-port 0 --port-file F``), the way any platform would meet the bank; scenarios are set
up and the virtual clock advanced through the control API (``/_admin``) over HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


@dataclass
class Bank:
    process: subprocess.Popen[bytes]
    url: str
    sftp_port: int
    log_path: Path
    admin: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.admin = httpx.Client(base_url=self.url + "/_admin", timeout=10.0)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        response = self.admin.request(method, path, json=body)
        assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def advance(self, by: str) -> None:
        self.call("POST", "/clock/advance", {"by": by})

    def next_business_day(self, at: str) -> None:
        self.call("POST", "/clock/next-business-day", {"at": at})

    def deposit(self, account_no: str, amount: str) -> None:
        self.call("POST", f"/accounts/{account_no}/deposit", {"amount": amount, "memo": "scenario"})

    def accounts(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.call("GET", "/accounts?kind=CLASS_III")
        return found

    def invariants_ok(self) -> bool:
        return bool(self.call("GET", "/invariants").get("ok"))

    def stop(self) -> None:
        self.admin.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)


def start_bank(workdir: Path, profile: Path | None = None) -> Bank:
    workdir.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    port_file, log_path = workdir / f"port-{tag}.json", workdir / f"bank-{tag}.log"
    args = [sys.executable, "-m", "simulator.cli", "serve", "--host", "127.0.0.1", "--ephemeral",
            "--http-port", "0", "--sftp-port", "0", "--port-file", str(port_file)]
    if profile is not None:
        args += ["--profile", str(profile)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANKSIM_")}
    env.update(TMPDIR=str(workdir), PYTHONUNBUFFERED="1")
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            ready = json.loads(port_file.read_text("utf-8"))
            break
        except (FileNotFoundError, ValueError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(f"banksim serve did not start:\n{log_path.read_text('utf-8', 'replace')}")
        time.sleep(0.02)
    return Bank(process, str(ready["url"]), int(ready["sftp"]), log_path)


_SURNAMES = "王李张刘陈杨黄赵吴周"
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def identity(n: int) -> dict[str, str]:
    """Five valid elements for person ``n`` (GB 11643 ID, Luhn-valid UnionPay card)."""
    born = date(1980, 1, 1) + timedelta(days=n)
    body = f"310101{born:%Y%m%d}{n % 1000:03d}"
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, _WEIGHTS, strict=True)) % 11]
    card = f"622202{n:012d}"
    return {"name": _SURNAMES[n % 10] + "测试", "id_number": body + check, "mobile": f"138{n:08d}",
            "bound_card_number": card + _luhn_digit(card), "bound_card_kind": "DEBIT_I"}
