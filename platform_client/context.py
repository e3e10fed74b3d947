"""What every step of the platform client works with: config, store, clock and the peers.

Example::

    ctx = Context.create(load_config("platform.yaml"))
    ctx.now_iso()          # '2026-01-06T10:00:00+08:00' (from the configured clock source)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from platform_client.bank_api import BankApi
from platform_client.clock import CST, BankClock, ClockSource, SystemClock
from platform_client.config import ClientConfig
from platform_client.sftp import SftpGateway
from platform_client.store import Store
from platform_client.wechat import WeChatClient


@dataclass
class Context:
    config: ClientConfig
    store: Store
    clock: ClockSource
    bank: BankApi
    wechat: WeChatClient

    @classmethod
    def create(cls, config: ClientConfig, *, clock: ClockSource | None = None,
               store: Store | None = None) -> Context:
        if clock is None:
            clock = (BankClock(config.admin_url, config.admin_token, config.http_timeout_s)
                     if config.clock == "bank" else SystemClock())
        return cls(config=config, store=store or Store.open(config.store_path), clock=clock,
                   bank=BankApi(config), wechat=WeChatClient(config))

    def now(self) -> datetime:
        return self.clock.now().astimezone(CST)

    def now_iso(self) -> str:
        return self.now().isoformat(timespec="seconds")

    def sftp(self) -> SftpGateway:
        return SftpGateway(self.config)

    def alert(self, kind: str, ref: str, message: str) -> bool:
        """Record an alert once per (kind, ref); True when it is new."""
        cursor = self.store.execute(
            "INSERT INTO alerts(at, kind, ref, message) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(kind, ref) DO NOTHING", (self.now_iso(), kind, ref, message))
        return cursor.rowcount > 0

    def close(self) -> None:
        self.bank.close()
        self.wechat.close()
        if isinstance(self.clock, BankClock):
            self.clock.close()
        self.store.close()
