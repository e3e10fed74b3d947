"""A platform's SFTP jail: path mapping and the write policy, without any SSH.

Each platform sees its own directory ``<root>/`` as ``/``::

    /upload/images/       ID-card images the platform sends      (write)
    /upload/batches/      T+1 batch files the platform sends     (write)
    /download/returns/    return files the bank writes           (read only)
    /download/statements/ statements the bank writes             (read only)

Rules (each refusal is a :class:`Refusal` whose ``status`` the SFTP adapter turns into
an SFTP status code; nothing here raises anything else for a bad client path):

* a client path is resolved against ``/`` with ``.`` and ``..`` handled textually; a
  ``..`` that would climb above ``/`` is refused, never clamped;
* the mapped path must be free of symbolic links: the real path
  (``os.path.realpath``) must equal the mapped one and lie inside the jail, so an
  existing link is never followed, wherever it points;
* files are written only directly inside ``/upload/images`` or ``/upload/batches``
  (no subdirectories, nothing else); directories are never created or removed;
* a name ending in ``.tmp`` or ``.part``, or starting with ``.``, is a *temporary*
  name: it may be overwritten, renamed and removed. Any other name is *final*: it is
  never overwritten, renamed or removed through SFTP (see :mod:`simulator.sftp.server`
  for when a final file counts as complete).

Example::

    jail = Jail(state_dir / "sftp" / "demo-platform")
    jail.ensure_layout()
    parts, local = jail.resolve(b"/upload/batches/DF_DEMO01_20260105_001.txt.part")
    upload_target(parts)        # Target(area="batches", name="DF_..._001.txt.part")
    jail.resolve(b"/../etc")    # raises PermissionRefused
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

AREAS = ("images", "batches")
LAYOUT = ("upload/images", "upload/batches", "download/returns", "download/statements")
TEMP_SUFFIXES = (".tmp", ".part")
MAX_NAME_BYTES = 255

Parts = tuple[str, ...]


class Refusal(Exception):
    """Root of the jail's refusals; ``status`` names the SFTP status to answer with.

    * :class:`PermissionRefused` (``permission_denied``): the policy forbids it;
    * :class:`NotFound` (``no_such_file``): there is nothing the client may see there;
    * :class:`Failed` (``failure``): allowed in principle, refused in this state
      (the target exists, the file is still open, the upload limit).
    """

    status = "failure"


class PermissionRefused(Refusal):
    status = "permission_denied"


class NotFound(Refusal):
    status = "no_such_file"


class Failed(Refusal):
    status = "failure"


@dataclass(frozen=True)
class Target:
    """A file the platform may write: ``/upload/<area>/<name>``."""

    area: str
    name: str

    @property
    def temporary(self) -> bool:
        return is_temp_name(self.name)


def is_temp_name(name: str) -> bool:
    """Temporary upload names: ``*.tmp``, ``*.part`` and dot files."""
    return name.startswith(".") or name.endswith(TEMP_SUFFIXES)


def virtual_parts(path: bytes | str) -> Parts:
    """The components below the jail's ``/`` that a client path names.

    Relative paths are taken from ``/``; empty components and ``.`` are dropped and
    ``..`` removes the previous component. Climbing above ``/`` is refused.

    >>> virtual_parts(b"/upload//images/./a/../x.jpg")
    ('upload', 'images', 'x.jpg')
    """
    if isinstance(path, bytes):
        try:
            text = path.decode("utf-8")
        except UnicodeDecodeError:
            raise NotFound("path is not valid UTF-8") from None
    else:
        text = path
    if "\x00" in text:
        raise PermissionRefused("path contains a NUL character")
    parts: list[str] = []
    for part in text.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise PermissionRefused("path leaves the jail")
            parts.pop()
        else:
            parts.append(part)
    return tuple(parts)


def virtual_path(parts: Parts) -> str:
    return "/" + "/".join(parts)


def _check_name(name: str) -> None:
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise PermissionRefused(f"file name longer than {MAX_NAME_BYTES} bytes")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise PermissionRefused("file name contains control characters")


def upload_target(parts: Parts) -> Target:
    """Where a write may go; refuses anything but a file directly in an upload area."""
    if len(parts) == 3 and parts[0] == "upload" and parts[1] in AREAS:
        _check_name(parts[2])
        return Target(parts[1], parts[2])
    if parts[:1] == ("download",):
        raise PermissionRefused("/download is read-only for the platform")
    raise PermissionRefused("files can be written only in /upload/images and /upload/batches")


def check_remove(parts: Parts) -> Target:
    target = upload_target(parts)
    if not target.temporary:
        raise PermissionRefused("only temporary files (*.tmp, *.part, .*) can be removed; "
                                "an accepted file stays")
    return target


def check_rename(old: Parts, new: Parts) -> tuple[Target, Target]:
    """Renames go from a temporary name to any name inside the upload areas."""
    source = upload_target(old)
    destination = upload_target(new)
    if not source.temporary:
        raise PermissionRefused("only temporary files (*.tmp, *.part, .*) can be renamed; "
                                "an accepted file stays as it is")
    return source, destination


def check_mkdir(parts: Parts) -> None:
    raise PermissionRefused("directories cannot be created: upload into /upload/images "
                            "or /upload/batches")


def check_rmdir(parts: Parts) -> None:
    raise PermissionRefused("the directory layout is fixed")


class Jail:
    """One platform's directory tree; ``root`` is made real (symlink-free) once."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = os.path.realpath(root)

    def ensure_layout(self) -> None:
        for sub in LAYOUT:
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)

    def local(self, parts: Parts) -> str:
        """The local path of ``parts`` (pure: no file system access)."""
        return os.path.join(self.root, *parts) if parts else self.root

    def contains(self, local: str) -> bool:
        return local == self.root or local.startswith(self.root + os.sep)

    def resolve(self, path: bytes | str) -> tuple[Parts, str]:
        """Components and local path of a client path; refuses escapes and symlinks."""
        parts = virtual_parts(path)
        local = self.local(parts)
        real = os.path.realpath(local)
        if real != local or not self.contains(real):
            raise PermissionRefused("symbolic links are not followed")
        return parts, local
