"""Host key and logins: each platform's SFTP user, by password and/or public key.

Users come from ``profile.platforms[*].sftp`` and are looked up at every attempt, so a
profile changed at runtime applies to the next login. Passwords are compared in
constant time; public keys are matched against the user's ``authorized_keys`` lines
(options such as ``from="..."`` are honoured). Keyboard-interactive, host-based and
GSSAPI logins are not offered; unknown users are refused like wrong passwords. With
``profile.sftp.refuse_login_rate`` > 0 a seeded share of logins is refused whatever
the credentials. Passwords and keys never reach the timeline or the log.

Example::

    key = load_host_key(bank.state_dir)   # <state_dir>/ssh_host_ed25519_key
"""

from __future__ import annotations

import hmac
import logging
import os
from pathlib import Path

import asyncssh

from simulator.config import SftpUser
from simulator.sftp.service import SftpService

log = logging.getLogger("banksim.sftp")
HOST_KEY_FILENAME = "ssh_host_ed25519_key"
_process_host_key: asyncssh.SSHKey | None = None


def load_host_key(state_dir: Path | None) -> asyncssh.SSHKey:
    """The server's ed25519 host key: generated once, kept in the state directory.

    An in-memory bank gets one key per process.
    """
    global _process_host_key
    if state_dir is None:
        if _process_host_key is None:
            _process_host_key = asyncssh.generate_private_key("ssh-ed25519")
        return _process_host_key
    path = Path(state_dir) / HOST_KEY_FILENAME
    if path.exists():
        return asyncssh.read_private_key(path)
    key = asyncssh.generate_private_key("ssh-ed25519", comment="banksim host key")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".new")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.export_private_key())
    os.replace(partial, path)
    return key


def _authorized(user: SftpUser, key: asyncssh.SSHKey, host: str, addr: str) -> bool:
    for line in user.authorized_keys:
        try:
            entries = asyncssh.import_authorized_keys(line)
        except (asyncssh.KeyImportError, ValueError):
            log.warning("ignoring an unreadable authorized_keys line of SFTP user %s",
                        user.username)
            continue
        if entries.validate(key, host, addr) is not None:
            return True
    return False


class BankSSHServer(asyncssh.SSHServer):
    """One per connection: authenticates a platform and remembers which one it is."""

    def __init__(self, service: SftpService) -> None:
        self.service = service
        self.conn: asyncssh.SSHServerConnection | None = None
        self.app_id: str | None = None
        self.username = ""
        self.method = ""
        self._fault_refused = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.service.connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.service.connections.discard(self.conn)

    def _peer(self) -> tuple[str, str]:
        peer = self.conn.get_extra_info("peername") if self.conn is not None else None
        addr = str(peer[0]) if peer else ""
        return addr, addr

    def _refused(self, username: str, reason: str, app_id: str | None = None) -> bool:
        self.service.record("sftp.login_refused", app_id=app_id, ref=username,
                            detail={"username": username, "reason": reason,
                                    "peer": self._peer()[1]})
        return False

    def begin_auth(self, username: str) -> bool:
        self.username = username
        self.app_id = None
        self._fault_refused = False
        platform = self.service.platform_for_user(username)
        if platform is None:
            self._refused(username, "unknown user")
        elif self.service.login_fault(username):
            self._fault_refused = True
            self._refused(username, "refused by sftp.refuse_login_rate", platform.app_id)
        return True

    def password_auth_supported(self) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def kbdint_auth_supported(self) -> bool:
        return False

    def _user(self, username: str) -> tuple[str, SftpUser] | None:
        if self._fault_refused or username != self.username:
            return None
        platform = self.service.platform_for_user(username)
        if platform is None or platform.sftp is None:
            return None
        return platform.app_id, platform.sftp

    def validate_password(self, username: str, password: str) -> bool:
        found = self._user(username)
        if found is None:
            return False
        app_id, user = found
        if user.password is None or not hmac.compare_digest(
                user.password.encode("utf-8"), password.encode("utf-8", "surrogatepass")):
            return self._refused(username, "wrong password", app_id)
        self.app_id, self.method = app_id, "password"
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        found = self._user(username)
        if found is None:
            return False
        app_id, user = found
        host, addr = self._peer()
        if not _authorized(user, key, host, addr):
            return self._refused(username, "public key not authorized", app_id)
        self.app_id, self.method = app_id, "publickey"
        return True

    def auth_completed(self) -> None:
        if self.app_id is None:  # pragma: no cover - asyncssh only completes after a validate
            if self.conn is not None:
                self.conn.close()
            return
        self.service.ensure_layout(self.app_id)
        self.service.record("sftp.login", app_id=self.app_id, ref=self.username,
                            detail={"username": self.username, "method": self.method,
                                    "peer": self._peer()[1]})
