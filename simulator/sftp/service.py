"""What all SFTP connections share: the Bank, the sink, the jails, fault counters.

Example::

    service = SftpService(bank, sink)
    service.ensure_all_layouts()
    jail = service.jail("demo-platform")        # <state_dir>/sftp/demo-platform/
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator.bank import Bank
from simulator.config import Platform
from simulator.domain.faults import draw
from simulator.sftp import FileSink
from simulator.sftp.jail import Jail, Target

if TYPE_CHECKING:
    from asyncssh import SSHServerConnection

log = logging.getLogger("banksim.sftp")
_COUNTERS_KEPT = 100_000


class SftpService:
    def __init__(self, bank: Bank, sink: FileSink) -> None:
        self.bank = bank
        self.sink = sink
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._jails: dict[tuple[Path, str], Jail] = {}
        self._login_attempts: dict[str, int] = {}
        self._upload_attempts: dict[tuple[str, str, str], int] = {}
        # Local paths open for writing in any session, so that a file being written is
        # never renamed, reopened or handed over by another session.
        self.open_writes: set[str] = set()
        self.connections: set[SSHServerConnection] = set()

    # -- platforms and jails ----------------------------------------------------------

    def platform_for_user(self, username: str) -> Platform | None:
        """The platform whose SFTP user this is, in the profile as it is now."""
        for platform in self.bank.profile.platforms:
            if platform.sftp is not None and platform.sftp.username == username:
                return platform
        return None

    @property
    def root(self) -> Path:
        """``<root>/<app_id>/`` is a platform's jail: the Bank's file tree when it has one
        (its outbox writes the download side there; a reset may move it), else
        ``<state_dir>/sftp``, else a temporary directory that goes with the service."""
        files_root = getattr(self.bank, "files_root", None)
        if isinstance(files_root, Path):
            return files_root
        if self.bank.state_dir is not None:
            return Path(self.bank.state_dir) / "sftp"
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="banksim-sftp-")
        return Path(self._tmp.name)

    def jail(self, app_id: str) -> Jail:
        key = (self.root, app_id)
        jail = self._jails.get(key)
        if jail is None:
            if len(self._jails) > 1024:  # roots left behind by resets
                self._jails.clear()
            jail = self._jails[key] = Jail(key[0] / app_id)
            jail.ensure_layout()
        return jail

    def ensure_layout(self, app_id: str) -> Jail:
        jail = self.jail(app_id)
        jail.ensure_layout()
        return jail

    def ensure_all_layouts(self) -> None:
        for platform in self.bank.profile.platforms:
            self.ensure_layout(platform.app_id)

    # -- seeded faults ----------------------------------------------------------------

    def login_fault(self, username: str) -> bool:
        """Whether this login attempt is refused by ``sftp.refuse_login_rate``."""
        profile = self.bank.profile
        rate = profile.sftp.refuse_login_rate
        if rate <= 0:
            return False
        attempt = self._login_attempts.get(username, 0) + 1
        self._login_attempts[username] = attempt
        return draw(profile.seed, "sftp-login", username, attempt) < rate

    def drop_fault(self, app_id: str, target: Target) -> bool:
        """Whether this upload's connection is dropped by ``sftp.drop_upload_rate``."""
        profile = self.bank.profile
        rate = profile.sftp.drop_upload_rate
        if rate <= 0:
            return False
        key = (app_id, target.area, target.name)
        attempt = self._upload_attempts.pop(key, 0) + 1
        self._upload_attempts[key] = attempt
        if len(self._upload_attempts) > _COUNTERS_KEPT:
            del self._upload_attempts[next(iter(self._upload_attempts))]
        return draw(profile.seed, "sftp-drop", app_id, target.area, target.name, attempt) < rate

    # -- timeline and hand-over ---------------------------------------------------------

    def record(self, kind: str, *, app_id: str | None = None, ref: str | None = None,
               detail: dict[str, Any] | None = None) -> None:
        """An event on the bank's timeline; never raises into the SSH machinery."""
        try:
            self.bank.event(kind, app_id=app_id, ref=ref, detail=detail)
            self.bank.flush()
        except Exception:
            log.exception("could not record %s for %s", kind, app_id or ref)

    def complete(self, app_id: str, target: Target, local: str, via: str) -> None:
        """Hand a complete upload to the sink (exactly once per completed file)."""
        path = Path(local)
        try:
            size = path.stat().st_size
        except OSError:
            size = -1
        self.record("sftp.upload_complete", app_id=app_id, ref=target.name,
                    detail={"area": target.area, "name": target.name, "bytes": size,
                            "via": via})
        try:
            self.sink.file_complete(app_id, target.area, target.name, path)
        except Exception:
            log.exception("the file sink failed on %s/%s from %s; the file stays at %s",
                          target.area, target.name, app_id, path)
        try:
            self.bank.flush()
        except Exception:
            log.exception("could not flush after handing over %s", path)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
