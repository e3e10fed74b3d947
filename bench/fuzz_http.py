"""Fuzzing the HTTP contracts with a bigger budget than CI: schemathesis against `banksim serve`.

CI runs a bounded, derandomized schemathesis pass (``tests/contract/test_schemathesis.py``,
``tests/contract/test_wechat_schemathesis.py``); this runs the same checks with many more
generated requests per operation, against one real ``banksim serve --ephemeral`` on a free
loopback port, every request signed over the exact bytes sent:

* ``bank``: ``contracts/bank-api.openapi.yaml`` (signature headers, ``contracts/signing.py``);
* ``wechat``: ``contracts/wechat-pay.openapi.yaml`` (``Authorization`` header,
  ``contracts/wechat_signing.py``), when that contract exists.

Checked on every answer: not a server error, a documented status, the documented content
type and a body matching the documented schema. Answers the profile injects on purpose (the
magic ``-BUSY-`` serial: 503 with code 3028) are counted apart, not as 5xx. At the end the
ledger invariants must hold. Run::

    .venv/bin/python -m bench.fuzz_http --examples 300 [--seed N] [--only bank|wechat]

It prints ``<contract>: N requests, 5xx 0 (injected k), contract violations 0`` per contract
and exits 1 on any 5xx or violation.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hseed
from requests.auth import AuthBase
from requests.models import PreparedRequest
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bench.common import free_port, start_server
from bench.workload import banksim_exe
from contracts import contract_path
from contracts.signing import sign_headers

APP_ID, SECRET = "demo-platform", "banksim-dev-secret"
MCHID = "1900000109"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
_NONCES = itertools.count()


def _body_bytes(r: PreparedRequest) -> bytes:
    body = r.body
    if isinstance(body, str):
        r.body = body = body.encode("utf-8")
        r.prepare_content_length(body)
    return body if isinstance(body, bytes) else b""


class BankSignature(AuthBase):
    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        r.headers.update(sign_headers(APP_ID, SECRET, r.method or "GET", r.path_url, _body_bytes(r)))
        return r


class WechatSignature(AuthBase):
    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        from simulator.testing.wechat_keys import dev_sign

        r.headers["Authorization"] = dev_sign(r.method or "GET", r.path_url, _body_bytes(r),
                                              nonce=f"fz{next(_NONCES):010d}")
        return r


@dataclass(frozen=True)
class Contract:
    name: str
    file: str
    auth: Callable[[], AuthBase]
    injected: Callable[[int, dict[str, Any]], bool]


def _bank_injected(status: int, body: dict[str, Any]) -> bool:
    return status == 503 and body.get("code") == "3028" and "-BUSY-" in str(body.get("request_serial"))


CONTRACTS = (
    Contract("bank", "bank-api.openapi.yaml", BankSignature, _bank_injected),
    # Hook: every contract listed here that exists is fuzzed; a new channel adds one line.
    Contract("wechat", "wechat-pay.openapi.yaml", WechatSignature, lambda status, body: False),
)


@dataclass
class Tally:
    requests: int = 0
    server_errors: int = 0
    injected: int = 0
    violations: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def line(self, name: str, took: float) -> str:
        spread = ", ".join(f"{k} {n}" for k, n in sorted(self.statuses.items()))
        return (f"{name}: {self.requests} requests in {took:.1f} s; 5xx {self.server_errors} "
                f"(injected by the profile {self.injected}), contract violations "
                f"{sum(self.violations.values())}\n  statuses: {spread}")


def fuzz_contract(contract: Contract, base_url: str, examples: int, seed: int | None) -> Tally:
    schema = schemathesis.openapi.from_path(contract_path(contract.file), config=schemathesis.Config())
    tally = Tally()
    with requests.Session() as session:
        session.auth = contract.auth()
        for result in schema.get_all_operations():
            if isinstance(result, Err):
                raise result.err()  # the contract itself does not load: nothing to fuzz
            operation = result.ok()

            @settings(max_examples=examples, deadline=None, database=None, derandomize=seed is None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy())
            def one(case: Any) -> None:
                response = case.call(base_url=base_url, session=session, timeout=30)
                tally.requests += 1
                tally.statuses[str(response.status_code)] += 1
                try:
                    body = json.loads(response.content or b"{}")
                except ValueError:
                    body = {}
                injected = isinstance(body, dict) and contract.injected(response.status_code, body)
                if injected:
                    tally.injected += 1
                    return
                if response.status_code >= 500:
                    tally.server_errors += 1
                try:
                    case.validate_response(response, checks=CHECKS)
                except Exception as exc:  # schemathesis raises a group of failed checks
                    key = f"{case.operation.label}: {type(exc).__name__}"
                    tally.violations[key] += 1
                    if len(tally.examples) < 10:
                        tally.examples.append(f"{key}: {str(exc)[:300]}")

            (hseed(seed)(one) if seed is not None else one)()
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz_http", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=300, help="generated requests per operation")
    parser.add_argument("--seed", type=int, default=None, help="default: derandomized (fixed) cases")
    parser.add_argument("--only", choices=[c.name for c in CONTRACTS])
    args = parser.parse_args(argv)
    failed = False
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="banksim-fuzz-http-") as tmp:
        argv_ = [str(banksim_exe()), "serve", "--host", "127.0.0.1", "--http-port", str(port),
                 "--sftp-port", "-1", "--state-dir", str(Path(tmp) / "state"), "--clock", "manual"]
        with start_server(argv_, port) as server:
            base = f"http://127.0.0.1:{port}"
            for contract in CONTRACTS:
                if args.only not in (None, contract.name):
                    continue
                if not contract_path(contract.file).exists():
                    print(f"{contract.name}: contracts/{contract.file} does not exist yet; skipped")
                    continue
                t0 = time.monotonic()
                tally = fuzz_contract(contract, base, args.examples, args.seed)
                print(tally.line(contract.name, time.monotonic() - t0), flush=True)
                for example in tally.examples:
                    print(f"  VIOLATION {example}")
                failed |= bool(tally.server_errors or tally.violations)
            invariants = requests.get(f"{base}/_admin/invariants", timeout=30).json()
            print(f"ledger invariants after the run: {'ok' if invariants.get('ok') else invariants}")
            failed |= invariants.get("ok") is not True
            if server.proc.poll() is not None:
                print(f"the server died during the run:\n{server.stderr_text()}")
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
