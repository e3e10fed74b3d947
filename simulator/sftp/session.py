"""One platform's SFTP session: every operation checked against its jail.

Paths and policy come from :mod:`simulator.sftp.jail`: a platform reads and lists
everything in its jail, writes only directly in ``/upload/images`` and
``/upload/batches``, and can create no links or directories. Every refusal answers an
SFTP status (permission denied, no such file or failure, with a message) and goes on
the timeline as ``sftp.refused``; it never ends the session or the server. When an
upload is complete is described in :mod:`simulator.sftp.server`.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import asyncssh

from simulator.sftp.auth import BankSSHServer
from simulator.sftp.jail import (
    Failed,
    Parts,
    PermissionRefused,
    Refusal,
    Target,
    check_mkdir,
    check_remove,
    check_rename,
    check_rmdir,
    upload_target,
    virtual_path,
)
from simulator.sftp.service import SftpService

_STATUS: dict[str, Callable[[str], asyncssh.SFTPError]] = {
    "permission_denied": asyncssh.SFTPPermissionDenied,
    "no_such_file": asyncssh.SFTPNoSuchFile,
    "failure": asyncssh.SFTPFailure,
}


@dataclass(eq=False)
class _Handle:
    """An open file; ``target`` is set when it is open for writing an upload."""

    fd: int
    local: str
    parts: Parts
    target: Target | None = None
    append: bool = False
    writes: int = 0
    partial: bool = False  # refused or dropped: already closed and removed
    closed: bool = False

    def fileno(self) -> int:
        return self.fd


def _show(path: bytes) -> str:
    return path.decode("utf-8", "replace")


class JailedSFTPServer(asyncssh.SFTPServer):
    """One SFTP session of one platform, confined to its jail."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], service: SftpService) -> None:
        super().__init__(chan)
        owner = chan.get_connection().get_owner()
        if not isinstance(owner, BankSSHServer) or owner.app_id is None:
            raise asyncssh.SFTPPermissionDenied("not logged in as a platform")
        self.service = service
        self.app_id = owner.app_id
        self.jail = service.jail(self.app_id)

    # -- policy plumbing ----------------------------------------------------------------

    @contextlib.contextmanager
    def _policy(self, op: str, *paths: bytes) -> Iterator[None]:
        try:
            yield
        except Refusal as exc:
            self.service.record("sftp.refused", app_id=self.app_id,
                                ref=" -> ".join(_show(p) for p in paths) or None,
                                detail={"op": op, "reason": str(exc), "status": exc.status})
            raise _STATUS[exc.status](str(exc)) from None

    def _resolve(self, op: str, path: bytes) -> tuple[Parts, str]:
        with self._policy(op, path):
            return self.jail.resolve(path)

    def map_path(self, path: bytes) -> bytes:
        # Every operation is overridden below; should asyncssh add one that maps paths
        # itself, it still lands inside the jail.
        return os.fsencode(self._resolve("map", path)[1])

    def reverse_map_path(self, path: bytes) -> bytes:
        local = os.fsdecode(path)
        if not self.jail.contains(local):
            raise asyncssh.SFTPNoSuchFile("no such file")
        rel = os.path.relpath(local, self.jail.root)
        return b"/" if rel == "." else os.fsencode("/" + rel)

    def _abandon(self, handle: _Handle, op: str, reason: str) -> None:
        """Close and remove a partial upload; it will never be handed over."""
        handle.partial = True
        with contextlib.suppress(OSError):
            os.close(handle.fd)
        self.service.open_writes.discard(handle.local)
        with contextlib.suppress(OSError):
            os.remove(handle.local)
        self.service.record("sftp.refused", app_id=self.app_id, ref=virtual_path(handle.parts),
                            detail={"op": op, "reason": reason, "status": "failure"})

    # -- files ----------------------------------------------------------------------------

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        write = bool(pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_APPEND))
        return self._open(path, read=bool(pflags & asyncssh.FXF_READ), write=write,
                          append=bool(pflags & asyncssh.FXF_APPEND),
                          create=bool(pflags & asyncssh.FXF_CREAT),
                          trunc=bool(pflags & asyncssh.FXF_TRUNC),
                          excl=bool(pflags & asyncssh.FXF_EXCL))

    def open56(self, path: bytes, desired_access: int, flags: int,
               attrs: asyncssh.SFTPAttrs) -> object:
        disp = flags & asyncssh.FXF_ACCESS_DISPOSITION
        append = bool(desired_access & asyncssh.ACE4_APPEND_DATA or flags & asyncssh.FXF_APPEND_DATA)
        return self._open(
            path, read=bool(desired_access & asyncssh.ACE4_READ_DATA),
            write=bool(desired_access & asyncssh.ACE4_WRITE_DATA) or append, append=append,
            create=disp in (asyncssh.FXF_CREATE_NEW, asyncssh.FXF_CREATE_TRUNCATE,
                            asyncssh.FXF_OPEN_OR_CREATE),
            trunc=disp in (asyncssh.FXF_CREATE_TRUNCATE, asyncssh.FXF_TRUNCATE_EXISTING),
            excl=disp == asyncssh.FXF_CREATE_NEW)

    def _open(self, path: bytes, *, read: bool, write: bool, append: bool, create: bool,
              trunc: bool, excl: bool) -> _Handle:
        parts, local = self._resolve("open", path)
        if not write:
            fd = os.open(local, os.O_RDONLY | os.O_NOFOLLOW)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise asyncssh.SFTPFailure("not a regular file")
            return _Handle(fd, local, parts)
        with self._policy("open", path):
            target = upload_target(parts)
            if local in self.service.open_writes:
                raise Failed("file is already open for writing")
            if os.path.lexists(local):
                if not target.temporary:
                    raise Failed("file exists: the bank never overwrites an accepted file")
                if not stat.S_ISREG(os.lstat(local).st_mode):
                    raise Failed("not a regular file")
        flags = (os.O_RDWR if read else os.O_WRONLY) | os.O_NOFOLLOW
        flags |= (os.O_CREAT if create else 0) | (os.O_TRUNC if trunc else 0)
        flags |= (os.O_EXCL if excl else 0) | (os.O_APPEND if append else 0)
        fd = os.open(local, flags, 0o644)
        self.service.open_writes.add(local)
        return _Handle(fd, local, parts, target=target, append=append)

    def close(self, file_obj: object) -> None:
        handle = file_obj
        assert isinstance(handle, _Handle)
        # asyncssh calls close() both for the client's CLOSE request and, when a session
        # ends, for every file still open; only the former completes an upload. It has
        # no flag for which one this is, but it calls us directly from _process_close
        # for a CLOSE (requests are processed one at a time, so a CLOSE followed at once
        # by a disconnect still counts). Should asyncssh rename it, nothing completes by
        # close and the integration tests fail, rather than partial files being handed
        # over.
        by_client = sys._getframe(1).f_code.co_name == "_process_close"
        if handle.closed:
            return
        handle.closed = True
        if handle.partial:
            return
        if handle.target is None:
            os.close(handle.fd)
            return
        if not by_client:
            self._abandon(handle, "close", "session ended before the file was closed")
            return
        os.close(handle.fd)
        self.service.open_writes.discard(handle.local)
        if not handle.target.temporary:
            self.service.complete(self.app_id, handle.target, handle.local, via="close")

    def read(self, file_obj: object, offset: int, size: int) -> bytes:
        assert isinstance(file_obj, _Handle)
        if file_obj.partial:
            raise asyncssh.SFTPFailure("upload was refused")
        return os.pread(file_obj.fd, size, offset)

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        handle = file_obj
        assert isinstance(handle, _Handle)
        if handle.target is None:
            raise asyncssh.SFTPPermissionDenied("file is not open for writing")
        if handle.partial:
            raise asyncssh.SFTPFailure("upload was refused; upload the file again")
        limit = self.service.bank.profile.sftp.max_upload_bytes
        start = os.fstat(handle.fd).st_size if handle.append else offset
        if start + len(data) > limit:
            message = f"file exceeds the upload limit of {limit} bytes"
            self._abandon(handle, "write", message)
            raise asyncssh.SFTPFailure(message)
        written = os.write(handle.fd, data) if handle.append else os.pwrite(handle.fd, data, offset)
        handle.writes += 1
        if handle.writes == 1 and self.service.drop_fault(self.app_id, handle.target):
            self._abandon(handle, "write", "connection dropped by sftp.drop_upload_rate")
            self.channel.close()
            raise asyncssh.SFTPConnectionLost("connection dropped")
        return written

    def fstat(self, file_obj: object) -> os.stat_result:
        assert isinstance(file_obj, _Handle)
        if file_obj.partial:
            raise asyncssh.SFTPFailure("upload was refused")
        return os.fstat(file_obj.fd)

    def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        assert isinstance(file_obj, _Handle)
        with self._policy("fsetstat", virtual_path(file_obj.parts).encode()):
            _only_times_and_permissions(attrs)

    def fsync(self, file_obj: object) -> None:
        assert isinstance(file_obj, _Handle)
        if not file_obj.partial:
            os.fsync(file_obj.fd)

    def fstatvfs(self, file_obj: object) -> os.statvfs_result:
        assert isinstance(file_obj, _Handle)
        return os.statvfs(self.jail.root)

    # -- paths ------------------------------------------------------------------------------

    def lstat(self, path: bytes) -> os.stat_result:
        return os.lstat(self._resolve("stat", path)[1])

    def stat(self, path: bytes) -> os.stat_result:
        # No link is ever followed, so stat is lstat.
        return os.lstat(self._resolve("stat", path)[1])

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        local = self._resolve("setstat", path)[1]
        os.lstat(local)
        with self._policy("setstat", path):
            _only_times_and_permissions(attrs)

    def lsetstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self.setstat(path, attrs)

    def statvfs(self, path: bytes) -> os.statvfs_result:
        return os.statvfs(self._resolve("statvfs", path)[1])

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        parts, local = self._resolve("list", path)
        parent = self.jail.local(parts[:-1])
        for name, where in ((b".", local), (b"..", parent)):
            yield asyncssh.SFTPName(name, attrs=asyncssh.SFTPAttrs.from_local(os.lstat(where)))
        with os.scandir(local) as entries:
            for entry in entries:
                attrs = asyncssh.SFTPAttrs.from_local(entry.stat(follow_symlinks=False))
                yield asyncssh.SFTPName(os.fsencode(entry.name), attrs=attrs)

    def realpath(self, path: bytes) -> bytes:
        return virtual_path(self._resolve("realpath", path)[0]).encode("utf-8")

    def remove(self, path: bytes) -> None:
        parts, local = self._resolve("remove", path)
        with self._policy("remove", path):
            check_remove(parts)
            if os.path.isdir(local):
                raise PermissionRefused("not a file")
        os.remove(local)

    def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        parts, _ = self._resolve("mkdir", path)
        with self._policy("mkdir", path):
            check_mkdir(parts)

    def rmdir(self, path: bytes) -> None:
        parts, _ = self._resolve("rmdir", path)
        with self._policy("rmdir", path):
            check_rmdir(parts)

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        old_parts, old_local = self._resolve("rename", oldpath)
        new_parts, new_local = self._resolve("rename", newpath)
        with self._policy("rename", oldpath, newpath):
            _, destination = check_rename(old_parts, new_parts)
            if old_local in self.service.open_writes:
                raise Failed("file is still open: close it before renaming")
            if not stat.S_ISREG(os.lstat(old_local).st_mode):
                raise Failed("not a regular file")
            if os.path.lexists(new_local):
                raise Failed("file exists: the bank never overwrites an accepted file")
        # One event loop serves every session, so nothing can appear between the check
        # above and this rename.
        os.rename(old_local, new_local)
        if not destination.temporary:
            self.service.complete(self.app_id, destination, new_local, via="rename")

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        self.rename(oldpath, newpath)

    def readlink(self, path: bytes) -> bytes:
        self._resolve("readlink", path)
        with self._policy("readlink", path):
            raise PermissionRefused("symbolic links are not followed")

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        with self._policy("symlink", oldpath, newpath):
            raise PermissionRefused("links cannot be created")

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        with self._policy("link", oldpath, newpath):
            raise PermissionRefused("links cannot be created")


def _only_times_and_permissions(attrs: asyncssh.SFTPAttrs) -> None:
    """Times and permissions are accepted and ignored; anything else is refused."""
    if any(value is not None for value in (attrs.size, attrs.alloc_size, attrs.uid, attrs.gid,
                                           attrs.owner, attrs.group, attrs.acl)):
        raise PermissionRefused("only times and permissions can be set (and they are ignored)")
