"""The bank's SFTP server as the platform uses it: uploads by temporary name, then rename.

A blocking facade over one asyncssh session (its own event loop). An upload is written to
``<name>.part`` and renamed to ``<name>`` only when complete, so the bank never takes a
half-written file; a stale ``.part`` from an earlier failed attempt is removed first. If a
previous attempt already renamed the file (the client crashed before recording it), the
rename is refused with "file exists" and the upload counts as done when the bytes agree.
Every failure (refused login, dropped connection, timeout) is :class:`SftpUnavailable`:
the caller leaves its state unchanged and tries again later.

Example::

    with SftpGateway(config) as sftp:
        sftp.upload("/upload/batches", "DF_DEMO01_20260106_1.txt", data)
        sftp.listdir("/download/returns")
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from types import TracebackType
from typing import TypeVar

import asyncssh

from platform_client.config import ClientConfig
from platform_client.errors import SftpUnavailable

T = TypeVar("T")

BATCHES_DIR = "/upload/batches"
IMAGES_DIR = "/upload/images"
RETURNS_DIR = "/download/returns"
STATEMENTS_DIR = "/download/statements"


class SftpGateway:
    """One SFTP session; open it with ``with``."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: asyncssh.SSHClientConnection | None = None
        self._client: asyncssh.SFTPClient | None = None

    def __enter__(self) -> SftpGateway:
        self._loop = asyncio.new_event_loop()
        try:
            self._conn = self._run(asyncssh.connect(
                self.config.sftp_host, self.config.sftp_port, username=self.config.sftp_username,
                password=self.config.sftp_password, known_hosts=None, client_keys=None,
                agent_path=None, config=None, gss_host=None))
            self._client = self._run(self._conn.start_sftp_client())
        except BaseException:
            self._shutdown()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._shutdown()

    def _shutdown(self) -> None:
        if self._loop is None:
            return
        try:
            if self._client is not None:
                self._client.exit()
            if self._conn is not None:
                self._conn.close()
                self._loop.run_until_complete(asyncio.wait_for(self._conn.wait_closed(), 5))
        except (OSError, asyncssh.Error, TimeoutError):
            pass  # closing a broken session: nothing left to save
        finally:
            self._loop.close()
            self._loop = None

    def _run(self, aw: Awaitable[T]) -> T:
        assert self._loop is not None, "use SftpGateway inside a with block"
        try:
            return self._loop.run_until_complete(asyncio.wait_for(aw, self.config.sftp_timeout_s))
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            raise SftpUnavailable(f"SFTP {self.config.sftp_host}:{self.config.sftp_port}: "
                                  f"{type(exc).__name__}: {exc}") from None

    @property
    def _sftp(self) -> asyncssh.SFTPClient:
        assert self._client is not None, "use SftpGateway inside a with block"
        return self._client

    async def _write(self, path: str, data: bytes) -> None:
        async with self._sftp.open(path, "wb") as fh:
            await fh.write(data)

    async def _read(self, path: str) -> bytes:
        async with self._sftp.open(path, "rb") as fh:
            data: bytes = await fh.read()
            return data

    async def _upload(self, directory: str, name: str, data: bytes) -> None:
        final, temp = f"{directory}/{name}", f"{directory}/{name}.part"
        if await self._sftp.exists(final):
            if await self._read(final) == data:
                return  # an earlier attempt completed before we could record it
            raise FileExistsError(f"{final} exists with other content: the bank will not take this file")
        if await self._sftp.exists(temp):
            await self._sftp.remove(temp)
        await self._write(temp, data)
        await self._sftp.rename(temp, final)

    def upload(self, directory: str, name: str, data: bytes) -> None:
        """Write ``data`` as ``directory/name`` (temporary name, then rename)."""
        self._run(self._upload(directory, name, data))

    def write(self, path: str, data: bytes) -> None:
        """Write under the final name and close (the way images are sent)."""
        self._run(self._write(path, data))

    def read(self, path: str) -> bytes:
        return self._run(self._read(path))

    def listdir(self, directory: str) -> list[str]:
        names = self._run(self._sftp.listdir(directory))
        return sorted(n for n in names if n not in (".", ".."))
