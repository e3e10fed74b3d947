"""Fixtures of the platform client's tests: a real bank per module (reset per test), contexts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from platform_client.clock import BankClock
from platform_client.config import ClientConfig
from platform_client.context import Context
from tests.platform_client.bank import Bank, start_bank

ContextFactory = Callable[..., Context]


@pytest.fixture(scope="module")
def bank_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bank]:
    bank = start_bank(tmp_path_factory.mktemp("bank"))
    try:
        yield bank
    finally:
        bank.stop()


@pytest.fixture
def bank(bank_module: Bank) -> Iterator[Bank]:
    """The module's bank, reset to its profile's start; its invariants must hold after the test."""
    assert bank_module.process.poll() is None, bank_module.log_path.read_text("utf-8", "replace")
    bank_module.call("POST", "/reset")
    yield bank_module
    assert bank_module.invariants_ok(), bank_module.call("GET", "/invariants")


@pytest.fixture
def make_ctx(bank: Bank, tmp_path: Path) -> Iterator[ContextFactory]:
    """Contexts of platforms talking to ``bank``, on the bank's clock, each with its own store."""
    made: list[Context] = []

    def make(name: str = "platform", **overrides: Any) -> Context:
        settings: dict[str, Any] = {"bank_url": bank.url, "sftp_port": bank.sftp_port, "clock": "bank",
                                    "store_path": str(tmp_path / f"{name}.db"), "sftp_timeout_s": 20.0}
        settings.update(overrides)
        config = ClientConfig(**settings)
        ctx = Context.create(config, clock=BankClock(config.admin_url))
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.close()
