"""The simulator as a testcontainers module: ``BankSimulatorContainer``.

Starts the ``banksim`` image (``docker/Dockerfile``), waits until ``GET /health`` answers
200 (not merely until a port is open), and hands tests the same
:class:`~simulator.testing.handle.SimulatorHandle` the embedded and URL modes give. Needs
the ``testcontainers`` package (``pip install 'banksim[containers]'``) and a Docker engine.

Example::

    from simulator.testing.container import BankSimulatorContainer

    with BankSimulatorContainer(profile={"bank": {"open_active": True}}, seed=7) as bank:
        handle = bank.handle()                 # URLs, platform credentials, admin token
        with bank.control() as admin:          # httpx.Client on /_admin with the token
            admin.post("/clock/advance", json={"by": "1d"})
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any, cast

import httpx
import yaml

from simulator.config import Profile, default_profile_text, merge_patch, profile_from_dict
from simulator.testing.handle import SimulatorHandle

try:
    from testcontainers.core.config import ConnectionMode
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.exceptions import ContainerStartException
    from testcontainers.core.waiting_utils import WaitStrategy, WaitStrategyTarget
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("simulator.testing.container needs testcontainers: "
                      "pip install 'banksim[containers]'") from exc

__all__ = ["BankSimulatorContainer", "HealthWaitStrategy"]

HTTP_PORT = 8600
SFTP_PORT = 2222
# Where docker/entrypoint.sh looks for a profile when BANKSIM_PROFILE is not set.
PROFILE_PATH = "/etc/banksim/profile.yaml"
ADMIN_TOKEN_HEADER = "X-Admin-Token"  # simulator/http/admin_routes.py
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class HealthWaitStrategy(WaitStrategy):
    """Ready when ``GET <path>`` answers 200; fails at once if the container exits.

    Polls every 50 ms (the simulator is usually healthy within a second, and the
    library's default poll of one second would double a test session's start-up).

    Example::

        DockerContainer("banksim:latest").waiting_for(
            HealthWaitStrategy(8600).with_startup_timeout(30))
    """

    def __init__(self, port: int, path: str = "/health") -> None:
        super().__init__()
        self._port = port
        self._path = path
        self._poll_interval = 0.05

    def wait_until_ready(self, container: WaitStrategyTarget) -> None:
        deadline = time.monotonic() + self._startup_timeout
        url: str | None = None
        last_problem = "not polled yet"
        while True:
            container.reload()
            if container.status in ("exited", "dead"):
                stdout, stderr = container.get_logs()
                raise ContainerStartException(
                    f"the simulator container stopped before it was healthy ({container.status}):\n"
                    + (stdout + stderr).decode("utf-8", "replace"))
            if container.status == "running":
                if url is None:
                    host = _loopback_name(container.get_container_host_ip())
                    url = f"http://{host}:{container.get_exposed_port(self._port)}{self._path}"
                try:
                    response = httpx.get(url, timeout=1.0)
                except httpx.HTTPError as exc:  # not listening yet
                    last_problem = f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code == 200:
                        return
                    last_problem = f"HTTP {response.status_code}"
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url or 'the simulator'} not healthy within "
                                   f"{self._startup_timeout:g} s (last: {last_problem})")
            time.sleep(self._poll_interval)


def _loopback_name(host: str) -> str:
    # Ports are published on 127.0.0.1; "localhost" may resolve to ::1 first.
    return "127.0.0.1" if host == "localhost" else host


def _profile_patch(profile: str | Path | dict[str, Any] | None, seed: int | None) -> dict[str, Any] | None:
    """The profile as a patch over the packaged default, with ``seed`` laid over it."""
    if profile is None:
        patch: dict[str, Any] = {}
    elif isinstance(profile, dict):
        patch = dict(profile)
    else:
        data = yaml.safe_load(Path(profile).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{profile}: a profile must be a YAML mapping")
        patch = data
    if seed is not None:
        patch["seed"] = seed
    return patch or None


class BankSimulatorContainer(DockerContainer):
    """The simulated bank in a container: HTTP API and control API, SFTP, a virtual clock.

    Args:
        image: the image built from ``docker/Dockerfile``.
        profile: a profile file (``str`` or ``Path``) or a profile as a dict; either is laid
            over the packaged default like ``banksim serve --profile``. It is validated here,
            before any container starts, and copied into the container.
        seed: overrides the profile's seed.
        clock: clock mode, as ``banksim serve --clock``: ``manual``, ``realtime`` or
            ``accelerated:N`` (the start time is the profile's ``clock.start``).
        admin_token: the control API's token; a fresh random one by default.
        host_ip: host interface the ports are published on. Default: 127.0.0.1 when the
            Docker engine is local, every interface otherwise (a remote engine).
        startup_timeout: seconds to wait for ``/health``.
        **kwargs: passed to :class:`testcontainers.core.container.DockerContainer`.

    Example::

        with BankSimulatorContainer(seed=7, clock="manual") as bank:
            httpx.get(bank.get_http_url() + "/health").json()["status"]   # "ok"
            bank.startup_seconds                                         # e.g. 0.9
    """

    def __init__(
        self,
        image: str = "banksim:latest",
        *,
        profile: str | Path | dict[str, Any] | None = None,
        seed: int | None = None,
        clock: str | None = None,
        admin_token: str | None = None,
        host_ip: str | None = None,
        startup_timeout: int = 30,
        **kwargs: Any,
    ) -> None:
        patch = _profile_patch(profile, seed)
        # Validated now: a bad profile is a clear error here, not a container that exits.
        defaults = yaml.safe_load(default_profile_text())
        self.profile: Profile = profile_from_dict(merge_patch(defaults, patch or {}))
        super().__init__(image, _wait_strategy=HealthWaitStrategy(HTTP_PORT).with_startup_timeout(
            startup_timeout), **kwargs)
        self.admin_token = admin_token or secrets.token_urlsafe(18)
        self.host_ip = host_ip
        self.startup_seconds: float | None = None
        self.with_exposed_ports(HTTP_PORT, SFTP_PORT)
        self.with_env("BANKSIM_ADMIN_TOKEN", self.admin_token)
        if patch is not None:
            text = yaml.safe_dump(patch, allow_unicode=True, sort_keys=False)
            self.with_copy_into_container(text.encode("utf-8"), PROFILE_PATH, 0o644)
        if clock is not None:
            self.with_command(["--clock", clock])

    def _configure(self) -> None:
        host_ip = self.host_ip
        if host_ip is None:
            client = self.get_docker_client()
            local = (client.get_connection_mode() == ConnectionMode.docker_host
                     and client.host() in _LOCAL_HOSTS)
            host_ip = "127.0.0.1" if local else ""
        if host_ip:
            for port in (HTTP_PORT, SFTP_PORT):
                # docker-py takes (interface, None) for "this interface, any free port";
                # testcontainers types the value as the port alone.
                self.ports[str(port)] = cast(int, (host_ip, None))

    def start(self) -> BankSimulatorContainer:
        """Create and start the container, then wait until ``/health`` answers 200."""
        started = time.monotonic()
        super().start()
        self.startup_seconds = time.monotonic() - started
        return self

    def get_http_url(self) -> str:
        """``http://host:port`` of the bank API, ``/health`` and ``/_admin``."""
        host = _loopback_name(self.get_container_host_ip())
        return f"http://{host}:{self.get_exposed_port(HTTP_PORT)}"

    def get_sftp_host(self) -> str:
        return _loopback_name(self.get_container_host_ip())

    def get_sftp_port(self) -> int:
        return self.get_exposed_port(SFTP_PORT)

    def handle(self) -> SimulatorHandle:
        """Where the container is, with the first platform's credentials and the admin token."""
        platform = self.profile.platforms[0]
        sftp = platform.sftp
        return SimulatorHandle(
            http_url=self.get_http_url(),
            sftp_host=self.get_sftp_host(),
            sftp_port=self.get_sftp_port(),
            app_id=platform.app_id,
            secret=platform.secret,
            sftp_username=sftp.username if sftp is not None else "",
            sftp_password=sftp.password if sftp is not None else None,
            admin_token=self.admin_token,
        )

    def control(self, timeout: float = 30.0) -> httpx.Client:
        """An ``httpx.Client`` on ``/_admin`` sending the admin token; close it when done."""
        return httpx.Client(base_url=self.get_http_url() + "/_admin", timeout=timeout,
                            headers={ADMIN_TOKEN_HEADER: self.admin_token})
