"""The bank's SFTP endpoint: each platform in its own jail, complete files handed over.

* :mod:`simulator.sftp.jail` — path mapping and write policy (pure, no SSH);
* :mod:`simulator.sftp.service` — state shared by all connections: jails, the sink,
  fault counters, the timeline;
* :mod:`simulator.sftp.auth` — host key and logins (password / public key);
* :mod:`simulator.sftp.session` — the SFTP operations in a jail;
* :mod:`simulator.sftp.server` — :func:`start_sftp_server` and when an upload is complete.

When a file counts as complete is described in :mod:`simulator.sftp.server` and
``docs/sftp.md``. Example::

    acceptor = await start_sftp_server(bank, "127.0.0.1", 0, sink)
    port = acceptor.get_port()
    ...
    await stop_sftp_server(acceptor)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from simulator.sftp.server import start_sftp_server, stop_sftp_server

__all__ = ["FileSink", "start_sftp_server", "stop_sftp_server"]


class FileSink(Protocol):
    """Receives each completed upload exactly once.

    ``area`` is ``"images"`` or ``"batches"``; ``path`` is the file's real path. The
    file stays where it is; the sink may read, move or delete it. An exception is
    logged and does not undo the upload.
    """

    def file_complete(self, app_id: str, area: str, name: str, path: Path) -> None: ...


def __getattr__(name: str) -> Any:
    # The server pulls in asyncssh; the jail and the sink protocol do not need it.
    if name in ("start_sftp_server", "stop_sftp_server"):
        from simulator.sftp import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
