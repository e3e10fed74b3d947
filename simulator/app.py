"""Wiring: one Bank, the HTTP and SFTP servers and the clock's ticker in one event loop.

Example::

    options = ServeOptions(http_port=0, sftp_port=0, ephemeral=True)
    asyncio.run(serve(options))          # what `banksim serve --ephemeral` does
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import json
import logging
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import asyncssh
import uvicorn

from simulator.bank import Bank
from simulator.config import load_profile
from simulator.http.app import create_app
from simulator.http.guard import check_admin_token
from simulator.http.middleware import DroppedResponseFilter
from simulator.sftp import FileSink
from simulator.sftp.server import start_sftp_server, stop_sftp_server
from simulator.wechat.dispatcher import run_forever as send_wechat_notifications

DEFAULT_HTTP_PORT = 8600
DEFAULT_SFTP_PORT = 2222
DEFAULT_STATE_DIR = Path(".banksim")
# Work per call on a batch before the event loop answers requests again. A batch is processed
# in slices of whole chunks (~4,300 records, ~25 ms on a quiet machine), so in practice one
# chunk per slice: a request waits at most about one chunk for the slice in progress.
SLICE_SECONDS = 0.015
log = logging.getLogger("banksim")


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn re-raises SIGTERM/SIGINT after a graceful shutdown, which would end the
        # process before the bank is closed and ephemeral state removed; stop instead.
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


class StartupError(RuntimeError):
    """The server refuses to start; the message says why and what to do."""


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    http_port: int = DEFAULT_HTTP_PORT
    sftp_port: int = DEFAULT_SFTP_PORT  # 0 picks a free port, -1 disables SFTP
    profile_path: Path | None = None
    state_dir: Path | None = None
    ephemeral: bool = False
    clock_mode: str | None = None
    admin_token: str | None = None
    port_file: Path | None = None
    # For a server run inside another program (simulator.testing.embedded): setting this
    # event (from another thread: loop.call_soon_threadsafe(event.set)) shuts it down
    # gracefully, as SIGTERM does for `banksim serve`.
    shutdown: asyncio.Event | None = None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_bank(options: ServeOptions) -> Bank:
    profile = load_profile(options.profile_path)
    if options.clock_mode:
        profile = profile.model_copy(
            update={"clock": profile.clock.model_copy(update={"mode": options.clock_mode})})
    if options.ephemeral:
        state_dir = Path(tempfile.mkdtemp(prefix="banksim-"))
    else:
        state_dir = options.state_dir or DEFAULT_STATE_DIR
    # An explicit profile or clock mode wins over what the state last ran with; otherwise
    # a restart keeps runtime profile changes.
    explicit = options.profile_path is not None or options.clock_mode is not None
    return Bank(profile, state_dir, prefer_stored_profile=not explicit, group_commit=True)


class _CallSink:
    """A ``file_complete`` callable as a :class:`FileSink`."""

    def __init__(self, handler: Any) -> None:
        self._handler = handler

    def file_complete(self, app_id: str, area: str, name: str, path: Path) -> None:
        self._handler(app_id, area, name, path)


class LoggingSink:
    """Only logs completed uploads (for a Bank that does not take files)."""

    def file_complete(self, app_id: str, area: str, name: str, path: Path) -> None:
        log.info("SFTP upload complete: %s %s/%s at %s", app_id, area, name, path)


def file_sink(bank: Bank) -> FileSink:
    handler = getattr(bank, "file_complete", None)
    return _CallSink(handler) if callable(handler) else LoggingSink()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio's own event loop turns on TCP_NODELAY for accepted
    # connections only when the listening socket says TCP, and without it every small
    # response waits ~40 ms for a delayed ACK (uvloop sets it either way).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def _tick(bank: Bank) -> None:
    """Run due jobs in realtime/accelerated modes (manual mode waits to be advanced), and in
    every mode finish a batch left in progress (e.g. one an upload's own ``run_due``
    started), a slice at a time with requests answered in between."""
    while True:
        wait = bank.scheduler.seconds_until_next_due()
        await asyncio.sleep(0.5 if wait is None else min(max(wait, 0.0), 0.5))
        if bank.clock.mode.kind != "manual":
            bank.scheduler.run_due()
            bank.flush()
        await bank.scheduler.finish_in_progress(bank.flush)


async def _exit_when_set(event: asyncio.Event, server: uvicorn.Server) -> None:
    await event.wait()
    server.should_exit = True


def _development_credentials() -> set[str]:
    """The secrets and passwords of the packaged default profile (documented, not secret)."""
    default = load_profile(None)
    found = {p.secret for p in default.platforms}
    found |= {p.sftp.password for p in default.platforms if p.sftp is not None and p.sftp.password}
    return found


def banner(bank: Bank, http_url: str, out: TextIO, sftp_url: str | None = None) -> None:
    clock = bank.clock_view()
    print(f"banksim: {bank.profile.bank.name} listening", file=out)
    print(f"  HTTP      {http_url}   (API docs {http_url}/docs, control {http_url}/_admin/docs)",
          file=out)
    if sftp_url:
        print(f"  SFTP      {sftp_url}   (/upload/images, /upload/batches, /download/...)",
              file=out)
    print(f"  state     {bank.state_dir or 'in memory'}", file=out)
    print(f"  clock     {clock['now']} ({clock['mode']}, business date {clock['business_date']})",
          file=out)
    # The embedded default's development credentials are printed so a new user can sign
    # requests at once; any other profile's secrets are the user's own and never printed.
    dev = _development_credentials()
    for p in bank.profile.platforms:
        secret = p.secret if p.secret in dev else "(from the profile)"
        print(f"  platform  app_id={p.app_id} secret={secret}  98 account {p.supervision_account}"
              f"  settlement {p.settlement_account}", file=out)
        if sftp_url and p.sftp is not None:
            password = p.sftp.password if p.sftp.password in dev else "(from the profile)"
            login = f"password={password}" if p.sftp.password else "public key only"
            print(f"  sftp user app_id={p.app_id} username={p.sftp.username} {login}", file=out)
    out.flush()


async def serve(options: ServeOptions, out: TextIO = sys.stdout) -> None:
    if not is_loopback(options.host) and not options.admin_token:
        raise StartupError(
            f"refusing to listen on {options.host} without --admin-token: the control API "
            "could reset or rewrite the bank from the network")
    try:
        check_admin_token(options.admin_token)
    except ValueError as exc:
        raise StartupError(f"--admin-token: {exc}") from None
    bank = build_bank(options)
    # Batches are processed in slices of about this much work, the event loop answering
    # requests in between (docs/RELIABILITY.md, "One tenant must not stall another").
    bank.scheduler.slice_seconds = SLICE_SECONDS
    sftp: asyncssh.SSHAcceptor | None = None
    try:
        sock = _bind(options.host, options.http_port)
        port = sock.getsockname()[1]
        if options.sftp_port >= 0:
            try:
                sftp = await start_sftp_server(bank, options.host, options.sftp_port,
                                               file_sink(bank))
            except OSError as exc:
                sock.close()
                raise StartupError(f"cannot listen on {options.host}:{options.sftp_port} "
                                   f"for SFTP: {exc.strerror or exc}") from None
            except asyncssh.KeyImportError as exc:
                sock.close()
                raise StartupError(f"cannot read the SFTP host key in {bank.state_dir}: {exc}; "
                                   "delete it to have a new one generated") from None
        sftp_port = sftp.get_port() if sftp is not None else None
        app = create_app(bank, admin_token=options.admin_token, bind_host=options.host)
        config = uvicorn.Config(app, loop="none", http="httptools", lifespan="off",
                                access_log=False, log_level="warning")
        logging.getLogger("uvicorn.error").addFilter(DroppedResponseFilter())
        server = _Server(config)
        host = f"[{options.host}]" if ":" in options.host else options.host
        http_url = f"http://{host}:{port}"
        sftp_url = f"sftp://{host}:{sftp_port}" if sftp_port is not None else None
        ticker = asyncio.create_task(_tick(bank))
        # WeChat payment notifications fall due as the clock runs (realtime/accelerated).
        notifier = asyncio.create_task(send_wechat_notifications(app.state.wechat_dispatcher))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        stopper = (asyncio.create_task(_exit_when_set(options.shutdown, server))
                   if options.shutdown is not None else None)
        while not server.started and not serving.done():
            await asyncio.sleep(0.005)
        if server.started:
            # Everything built so far (FastAPI, pydantic schemas, routes) lives as long as
            # the process; freezing it keeps the cyclic GC from re-walking it in every
            # full collection, which showed up as latency spikes under load.
            gc.collect()
            gc.freeze()
            gc.set_threshold(50_000, 20, 20)
            banner(bank, http_url, out, sftp_url)
            if options.port_file:
                # Renamed into place: a harness polling for the file never reads half of it.
                partial = options.port_file.with_name(options.port_file.name + ".part")
                partial.write_text(json.dumps({"http": port, "url": http_url, "sftp": sftp_port}))
                partial.replace(options.port_file)
        await serving
        for task in (ticker, stopper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        notifier.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await notifier
    finally:
        if sftp is not None:
            await stop_sftp_server(sftp)
        if options.ephemeral:
            bank.destroy()
        else:
            bank.close()


def run(options: ServeOptions) -> None:
    """Blocking entry point with the fast event loop (uvloop) when it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(serve(options))
    else:
        uvloop.run(serve(options))
