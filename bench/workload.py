"""Workloads: pre-built, signed account-opening requests and the servers that answer them.

Every opening gets its own ID number (an ID may hold at most 5 accounts), bound card,
mobile, request serial and nonce, so a run never trips the bank's per-person limit, serial
idempotency or replay protection. Bodies are built before any clock starts.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

from contracts.signing import sign_headers
from simulator.domain.identity import make_card_number, make_id_number

APP_ID = "demo-platform"
SECRET = "banksim-dev-secret"
OPEN_PATH = "/api/v1/accounts/open"
BASELINE_PATH = "/baseline"

NAMES = ("张三", "李四", "王芳", "刘洋", "陈静", "杨帆", "赵磊", "欧阳娜娜")
AREA_CODE = "310101"  # 上海市黄浦区
FIRST_BIRTH = date(1960, 1, 1)
LAST_BIRTH = date(2000, 12, 31)
_BIRTH_DAYS = (LAST_BIRTH - FIRST_BIRTH).days + 1


def opening_body(index: int, tag: str) -> dict[str, str]:
    """The ``index``-th opening of a run; ``tag`` keeps serials unique across runs."""
    day, sequence = divmod(index, 999)  # sequences 001..999 on each birth date
    birth = FIRST_BIRTH + timedelta(days=day % _BIRTH_DAYS)
    return {
        "request_serial": f"bench-{tag}-{index:07d}",
        "name": NAMES[index % len(NAMES)],
        "id_number": make_id_number(AREA_CODE, birth, sequence + 1),
        "mobile": f"139{index % 10**8:08d}",
        "bound_card_number": make_card_number("622202", 19, index),
        "bound_card_kind": "DEBIT_I",
    }


def http_request(method: str, path: str, port: int, body: bytes,
                 headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}",
             "Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


def signed_requests(path: str, port: int, start: int, count: int, tag: str) -> list[bytes]:
    """``count`` signed opening requests (indices ``start``..) addressed to ``path``.

    The baseline gets the same bodies and headers as the bank, only the path differs.
    """
    out = []
    for index in range(start, start + count):
        body = json.dumps(opening_body(index, tag), ensure_ascii=False,
                          separators=(",", ":")).encode()
        headers = sign_headers(APP_ID, SECRET, "POST", path, body)
        out.append(http_request("POST", path, port, body, headers))
    return out


def run_tag() -> str:
    return secrets.token_hex(3)


def opening_failures(responses: list[tuple[int, bytes] | None]) -> dict[str, int]:
    """Why responses are not a successful opening: ``{reason: count}``, empty when all are.

    A success is HTTP 200 with JSON ``code == "0000"`` and an ``account_no``; an unanswered
    request counts as ``no response``.
    """
    reasons: dict[str, int] = {}
    for item in responses:
        reason = _failure(item)
        if reason is not None:
            reasons[reason] = reasons.get(reason, 0) + 1
    return reasons


def _failure(item: tuple[int, bytes] | None) -> str | None:
    if item is None:
        return "no response"
    status, body = item
    try:
        doc = json.loads(body)
    except ValueError:
        return f"HTTP {status} non-JSON body"
    code = doc.get("code") if isinstance(doc, dict) else None
    if status == 200 and code == "0000":
        data = doc.get("data")
        if isinstance(data, dict) and data.get("account_no"):
            return None
        return "HTTP 200 code 0000 without data.account_no"
    return f"HTTP {status} code {code}"


# --- servers -----------------------------------------------------------------------------

def banksim_exe() -> Path:
    return Path(sys.executable).parent / "banksim"


def banksim_argv(port: int) -> list[str]:
    return [str(banksim_exe()), "serve", "--host", "127.0.0.1", "--http-port", str(port), "--sftp-port", "0",
            "--ephemeral", "--clock", "manual"]


def baseline_argv(port: int, python: str = sys.executable) -> list[str]:
    return [python, "-m", "uvicorn", "bench.baseline_app:app", "--host", "127.0.0.1",
            "--port", str(port), "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "warning"]


def banksim_unavailable() -> str | None:
    """Why ``banksim serve`` cannot be benchmarked, or ``None`` when it can."""
    exe = banksim_exe()
    if not exe.exists():
        return f"{exe} does not exist"
    try:
        proc = subprocess.run([str(exe), "serve", "--help"], capture_output=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"banksim serve --help failed: {exc}"
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
        return f"banksim serve --help exited {proc.returncode}: {' '.join(tail)}"
    return None
