"""The SFTP operations in a platform's jail, and the listener that serves them.

The operations themselves, and the jail policy they enforce, are in
:mod:`simulator.sftp.session` and :mod:`simulator.sftp.jail`.

Completion — when an upload is handed over (``sink.file_complete``, exactly once):

* (a) written under a temporary name (``*.tmp``, ``*.part`` or a leading ``.``) and
  then RENAMED to its final name: the rename is the signal; the temporary file itself
  is never handed over. The rename is refused while the file is still open, and onto
  a name that exists ("file exists"): the bank never overwrites an accepted file.
* (b) written directly under its final name and CLOSED by the client: the close is the
  signal. Opening an existing final name for writing is refused for the same reason.

Never handed over: a file still open; a temporary name; an upload over
``profile.sftp.max_upload_bytes`` (the write fails with "file exceeds the upload
limit" and the partial file is removed); an upload whose connection is dropped
(``profile.sftp.drop_upload_rate``: the channel is closed after the first write) or
ends before the client closed the file — such partial files are removed too. A sink
that raises is logged; the file stays and the session goes on.

Example::

    acceptor = await start_sftp_server(bank, "127.0.0.1", 0, sink)
    print(acceptor.get_port())
    await stop_sftp_server(acceptor)
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref

import asyncssh

from simulator.bank import Bank
from simulator.sftp import FileSink
from simulator.sftp.auth import BankSSHServer, load_host_key
from simulator.sftp.service import SftpService
from simulator.sftp.session import JailedSFTPServer

# The service behind each listener, for stop_sftp_server to close its connections.
_services: weakref.WeakKeyDictionary[asyncssh.SSHAcceptor, SftpService] = (
    weakref.WeakKeyDictionary())


async def start_sftp_server(bank: Bank, host: str, port: int, sink: FileSink) -> asyncssh.SSHAcceptor:
    """Listen for SFTP on (host, port) in the running loop; port 0 picks a free port."""
    service = SftpService(bank, sink)
    service.ensure_all_layouts()
    acceptor = await asyncssh.create_server(
        lambda: BankSSHServer(service), host, port,
        server_host_keys=[load_host_key(bank.state_dir)],
        sftp_factory=lambda chan: JailedSFTPServer(chan, service),
        # SFTP v3 (what OpenSSH speaks); no scp, shell, pty, forwarding or GSSAPI.
        sftp_version=3, allow_scp=False, agent_forwarding=False, x11_forwarding=False,
        allow_pty=False, gss_host=None, config=None, rdns_lookup=False, login_timeout=30,
        reuse_address=True)
    _services[acceptor] = service
    return acceptor


async def stop_sftp_server(acceptor: asyncssh.SSHAcceptor, timeout: float = 5.0) -> None:
    """Stop listening, close every open SFTP connection and wait for them (bounded)."""
    acceptor.close()
    service = _services.pop(acceptor, None)
    connections = list(service.connections) if service is not None else []
    for conn in connections:
        conn.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(acceptor.wait_closed(),
                                              *(c.wait_closed() for c in connections)),
                               timeout)
    if service is not None:
        service.close()
