"""Where a running simulator is and how to log in to it, whatever started it.

The pytest plugin's embedded mode, its ``--banksim-url`` mode and the testcontainers
module all hand tests one of these, so fixtures and steps never care which it was.

Example::

    handle = SimulatorHandle(http_url="http://127.0.0.1:8600", sftp_host="127.0.0.1",
                             sftp_port=2222)
    handle.http_url + "/health"
"""

from __future__ import annotations

from dataclasses import dataclass

# The embedded default profile's development credentials (simulator/profiles/default.yaml).
DEFAULT_APP_ID = "demo-platform"
DEFAULT_SECRET = "banksim-dev-secret"
DEFAULT_SFTP_USERNAME = "demo"
DEFAULT_SFTP_PASSWORD = "banksim-dev-sftp"


@dataclass(frozen=True)
class SimulatorHandle:
    """One running simulator: its HTTP base URL, SFTP endpoint and a platform's credentials.

    ``sftp_port`` is None when the simulator runs without SFTP. ``admin_token`` is the
    control API's bearer token, None when the control API needs none (loopback).
    """

    http_url: str
    sftp_host: str | None = None
    sftp_port: int | None = None
    app_id: str = DEFAULT_APP_ID
    secret: str = DEFAULT_SECRET
    sftp_username: str = DEFAULT_SFTP_USERNAME
    sftp_password: str | None = DEFAULT_SFTP_PASSWORD
    admin_token: str | None = None
    state_dir: str | None = None

    @property
    def admin_url(self) -> str:
        return self.http_url.rstrip("/") + "/_admin"
