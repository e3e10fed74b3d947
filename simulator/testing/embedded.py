"""``banksim serve`` inside the test process: the server in a background thread.

The same :func:`simulator.app.serve` coroutine as the command line, in its own event loop
on a daemon thread, with ephemeral state and free ports on 127.0.0.1 (HTTP and SFTP port
0). The bound ports are read from the port file the server writes when it is ready;
:meth:`EmbeddedSimulator.stop` asks the server to shut down gracefully (the ``shutdown``
event of :class:`~simulator.app.ServeOptions`) and waits for the thread.

Starting in-process saves the interpreter start-up and import time of a subprocess
(about a second), which is most of what a short scenario suite would otherwise spend.

Example::

    with EmbeddedSimulator(seed=7) as sim:
        handle = sim.handle            # SimulatorHandle: URLs, SFTP port, credentials
        httpx.get(handle.http_url + "/health")
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from simulator.app import ServeOptions, serve
from simulator.testing.handle import SimulatorHandle

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
_POLL_S = 0.01


class EmbeddedError(RuntimeError):
    """The embedded simulator did not start (the message has its output) or did not stop."""


class EmbeddedSimulator:
    """One simulator served from a background thread of this process.

    ``profile`` is a profile file laid over the packaged default (as ``--profile``);
    ``seed`` overrides the profile's seed. State is ephemeral: removed at :meth:`stop`.
    """

    def __init__(self, *, profile: Path | None = None, seed: int | None = None,
                 admin_token: str | None = None) -> None:
        self.profile = profile
        self.seed = seed
        self.admin_token = admin_token
        self.output = io.StringIO()  # the banner, kept for failure reports
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._handle: SimulatorHandle | None = None

    @property
    def handle(self) -> SimulatorHandle:
        if self._handle is None:
            raise EmbeddedError("the embedded simulator is not running; call start() first")
        return self._handle

    def __enter__(self) -> EmbeddedSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _profile_path(self, workdir: Path) -> Path | None:
        if self.seed is None:
            return self.profile
        # A seed alone is a one-key profile file laid over the given one (or the default).
        data: dict[str, Any] = {}
        if self.profile is not None:
            loaded = yaml.safe_load(self.profile.read_text("utf-8"))
            data = dict(loaded) if isinstance(loaded, dict) else {}
        data["seed"] = self.seed
        path = workdir / "profile.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
        return path

    def start(self) -> SimulatorHandle:
        """Start the server and wait until it listens; returns its handle."""
        if self._handle is not None:
            return self._handle
        self._workdir = tempfile.TemporaryDirectory(prefix="banksim-embedded-")
        workdir = Path(self._workdir.name)
        port_file = workdir / "ports.json"
        self._shutdown = asyncio.Event()
        options = ServeOptions(host="127.0.0.1", http_port=0, sftp_port=0, ephemeral=True,
                               profile_path=self._profile_path(workdir),
                               admin_token=self.admin_token, port_file=port_file,
                               shutdown=self._shutdown)
        # serve() freezes the objects alive at start-up and raises the GC thresholds: right
        # for a server process, wrong for a test session; both are put back once it is up.
        thresholds = gc.get_threshold()
        self._thread = threading.Thread(target=self._run, args=(options,),
                                        name="banksim-embedded", daemon=True)
        self._thread.start()
        try:
            ready = self._wait_ready(port_file)
        finally:
            gc.unfreeze()
            gc.set_threshold(*thresholds)
        self._handle = SimulatorHandle(
            http_url=str(ready["url"]), sftp_host="127.0.0.1",
            sftp_port=int(ready["sftp"]) if ready.get("sftp") is not None else None,
            admin_token=self.admin_token, state_dir=None)
        return self._handle

    def _run(self, options: ServeOptions) -> None:
        loop = _new_loop()
        self._loop = loop
        try:
            loop.run_until_complete(serve(options, out=self.output))
        except BaseException as exc:  # reported by start() or stop() in the caller's thread
            self._error = exc
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _wait_ready(self, port_file: Path) -> dict[str, Any]:
        deadline = time.monotonic() + READY_TIMEOUT_S
        assert self._thread is not None
        while True:
            if port_file.exists():
                data: dict[str, Any] = json.loads(port_file.read_text("utf-8"))
                return data
            if not self._thread.is_alive():
                self._cleanup()
                raise EmbeddedError(f"the embedded simulator stopped before it was ready: "
                                    f"{self._error!r}\n{self.output.getvalue()}") from self._error
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedError(f"the embedded simulator was not ready after "
                                    f"{READY_TIMEOUT_S} s\n{self.output.getvalue()}")
            time.sleep(_POLL_S)  # start-up polling (bounded), not a business delay

    def stop(self) -> None:
        """Shut the server down gracefully and remove its state; idempotent."""
        thread, loop, event = self._thread, self._loop, self._shutdown
        if thread is not None and thread.is_alive() and loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(event.set)
            thread.join(STOP_TIMEOUT_S)
            if thread.is_alive():
                raise EmbeddedError(f"the embedded simulator did not stop within {STOP_TIMEOUT_S} s")
        self._cleanup()

    def _cleanup(self) -> None:
        self._thread = self._loop = self._shutdown = None
        self._handle = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None


def _new_loop() -> asyncio.AbstractEventLoop:
    """The event loop ``banksim serve`` runs on: uvloop when installed (it ships with uvicorn)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
