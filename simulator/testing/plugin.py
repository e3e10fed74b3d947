"""The banksim pytest plugin: a running simulator as fixtures, checked after every test.

Installed with the package (entry point ``pytest11: banksim``), so any platform team gets
it with ``pip install banksim``. Everything is opt-in: a test that asks for none of the
fixtures below starts nothing and is checked for nothing.

Where the simulator comes from (``--banksim``):

* ``embedded`` (default): ``banksim serve`` in a background thread of the test process,
  ephemeral state, free 127.0.0.1 ports, started once per session on first use;
* ``url``: one already running (``--banksim-url URL``, implied by it; with
  ``--banksim-admin-token`` and ``--banksim-sftp-port``);
* ``container``: :mod:`simulator.testing.container` with ``--banksim-image IMAGE``
  (needs the ``containers`` extra and a Docker daemon).

``--banksim-profile FILE`` lays a profile over the default and ``--banksim-seed N`` sets
its seed (url mode: patched into the running simulator at session start).

Fixtures:

* ``banksim`` (session): the :class:`~simulator.testing.handle.SimulatorHandle`;
* ``banksim_control`` (session): a :class:`~simulator.testing.control.ControlClient`;
* ``banksim_reset`` (function): puts the session's profile back and resets the bank, so
  tests run in any order; returns the control client. Every test that uses the simulator
  gets it automatically (a fresh bank per test); ``@pytest.mark.banksim_shared`` on a test
  or module keeps the state the previous test left instead;
* ``bank_api`` (function): a signed :class:`~simulator.testing.bank_api.BankApiClient`;
* ``banksim_sftp`` (function): an :class:`~simulator.testing.bank_api.SftpSession`;
* ``platform_client`` (function): a :class:`platform_client.context.Context` bound to a
  freshly reset simulator (bank URL, SFTP port, admin token, the bank's clock, the
  platform's and WeChat merchant's credentials from the running profile), with its own
  store in the test's tmp dir and a payment-notification endpoint on a free 127.0.0.1
  port, served for the test's duration; everything is closed at teardown.

After each test that used the simulator, ``GET /_admin/invariants`` must be ok; a
violation is an error in the test's teardown listing the violations. When such a test
fails, its report gets two sections: the simulator's event timeline since the test
started, and the files exchanged (names and first lines).

Example::

    def test_refund(bank_api, banksim_control):       # a fresh bank: reset before the test
        banksim_control.patch_profile({"bank": {"open_active": True}})
        answer = bank_api.open_account("OPEN-1", identity)
        ...
"""

from __future__ import annotations

import importlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from simulator.testing.handle import SimulatorHandle

if TYPE_CHECKING:
    from platform_client.context import Context
    from simulator.testing.bank_api import BankApiClient, SftpSession
    from simulator.testing.control import ControlClient

# The clients (httpx, asyncssh) are imported when a fixture is first used: pytest loads
# this plugin in every run of every project that installs banksim, and most tests never
# touch the simulator.

MODES = ("embedded", "url", "container")
DEFAULT_IMAGE = "banksim:latest"
# A test "used the simulator" when one of these is in its fixture closure (all of them
# depend on ``banksim``).
USES_SIMULATOR = "banksim"
TRAIL_EVENTS = 200
TRAIL_FILE_LINES = 6


@dataclass
class _Runtime:
    """The session's simulator: how to reach it and the profile each test starts from."""

    handle: SimulatorHandle
    control: ControlClient
    profile: dict[str, Any]
    stop: list[Any] = field(default_factory=list)  # callables, run at session end


_ReportWrapper = Generator[None, pytest.TestReport, pytest.TestReport]
_RUNTIME = pytest.StashKey[_Runtime]()
_EVENTS_FROM = pytest.StashKey[int]()
_USED = pytest.StashKey[bool]()


# -- options --------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("banksim", "banksim simulator (fixtures banksim, bank_api, ...)")
    group.addoption("--banksim", choices=MODES, default=None, dest="banksim_mode",
                    help="where the simulator comes from: embedded (default), url, container")
    group.addoption("--banksim-url", default=None, metavar="URL",
                    help="a running simulator's HTTP base URL (implies --banksim=url)")
    group.addoption("--banksim-admin-token", default=None, metavar="TOKEN",
                    help="the control API token of the simulator at --banksim-url")
    group.addoption("--banksim-sftp-port", type=int, default=None, metavar="N",
                    help="the SFTP port of the simulator at --banksim-url (default: none)")
    group.addoption("--banksim-profile", default=None, metavar="FILE",
                    help="a profile YAML laid over the default profile")
    group.addoption("--banksim-seed", type=int, default=None, metavar="N",
                    help="the profile's seed (every random decision of the simulator)")
    group.addoption("--banksim-image", default=DEFAULT_IMAGE, metavar="IMAGE",
                    help=f"container mode: the simulator image (default {DEFAULT_IMAGE})")


def _mode(config: pytest.Config) -> str:
    mode: str | None = config.getoption("banksim_mode")
    url: str | None = config.getoption("banksim_url")
    if mode is None:
        return "url" if url else "embedded"
    if mode != "url" and url:
        raise pytest.UsageError(f"--banksim-url goes with --banksim=url, not --banksim={mode}")
    if mode == "url" and not url:
        raise pytest.UsageError("--banksim=url needs --banksim-url URL")
    return mode


SHARED_MARKER = "banksim_shared"


def pytest_configure(config: pytest.Config) -> None:
    _mode(config)  # contradictory --banksim options stop the run at once, not in a fixture
    config.addinivalue_line(
        "markers", f"{SHARED_MARKER}: the test continues from the bank state the previous test "
        "left (no automatic reset of the banksim simulator)")


def _profile_file(config: pytest.Config) -> Path | None:
    value: str | None = config.getoption("banksim_profile")
    if value is None:
        return None
    path = Path(value)
    if not path.is_file():
        raise pytest.UsageError(f"--banksim-profile {value}: no such file")
    return path


# -- starting the simulator -------------------------------------------------------------------


def _start_embedded(config: pytest.Config, runtime_stop: list[Any]) -> SimulatorHandle:
    from simulator.testing.embedded import EmbeddedSimulator

    sim = EmbeddedSimulator(profile=_profile_file(config), seed=config.getoption("banksim_seed"))
    handle = sim.start()
    runtime_stop.append(sim.stop)
    return handle


def _start_url(config: pytest.Config) -> SimulatorHandle:
    from urllib.parse import urlsplit

    url: str = config.getoption("banksim_url")
    host = urlsplit(url).hostname or "127.0.0.1"
    sftp_port: int | None = config.getoption("banksim_sftp_port")
    return SimulatorHandle(http_url=url.rstrip("/"), sftp_host=host if sftp_port else None,
                           sftp_port=sftp_port, admin_token=config.getoption("banksim_admin_token"))


def _start_container(config: pytest.Config, runtime_stop: list[Any]) -> SimulatorHandle:
    try:
        module = importlib.import_module("simulator.testing.container")
    except ImportError as exc:
        pytest.fail(f"--banksim=container needs simulator.testing.container and the testcontainers "
                    f"package (pip install 'banksim[containers]'): {exc}", pytrace=False)
    profile = _profile_file(config)
    try:
        container = module.BankSimulatorContainer(
            config.getoption("banksim_image"), profile=profile, seed=config.getoption("banksim_seed"),
            clock="manual")
        container.start()
    except Exception as exc:  # docker missing, image missing, daemon down: say which
        pytest.fail(f"--banksim=container could not start {config.getoption('banksim_image')!r} "
                    f"(is Docker running and the image built?): {type(exc).__name__}: {exc}",
                    pytrace=False)
    runtime_stop.append(container.stop)
    handle: SimulatorHandle = container.handle()
    return handle


def _url_mode_profile(config: pytest.Config, control: ControlClient) -> None:
    """url mode: lay --banksim-profile and --banksim-seed over the running profile."""
    import yaml

    patch: dict[str, Any] = {}
    profile = _profile_file(config)
    if profile is not None:
        loaded = yaml.safe_load(profile.read_text("utf-8"))
        if isinstance(loaded, dict):
            patch.update(loaded)
    seed = config.getoption("banksim_seed")
    if seed is not None:
        patch["seed"] = seed
    if patch:
        control.patch_profile(patch)


@pytest.fixture(scope="session")
def banksim(pytestconfig: pytest.Config) -> Iterator[SimulatorHandle]:
    """The session's running simulator (started on first use in embedded/container mode)."""
    from simulator.testing.control import ControlClient

    mode = _mode(pytestconfig)
    stop: list[Any] = []
    try:
        if mode == "embedded":
            handle = _start_embedded(pytestconfig, stop)
        elif mode == "container":
            handle = _start_container(pytestconfig, stop)
        else:
            handle = _start_url(pytestconfig)
        control = ControlClient.for_handle(handle)
        stop.insert(0, control.close)
        if not control.health():
            pytest.fail(f"no banksim answering at {handle.http_url}/health", pytrace=False)
        if mode == "url":
            _url_mode_profile(pytestconfig, control)
        runtime = _Runtime(handle=handle, control=control, profile=control.profile(), stop=stop)
        pytestconfig.stash[_RUNTIME] = runtime
        yield handle
    finally:
        if _RUNTIME in pytestconfig.stash:
            del pytestconfig.stash[_RUNTIME]
        for action in stop:
            action()


@pytest.fixture(scope="session")
def banksim_control(banksim: SimulatorHandle, pytestconfig: pytest.Config) -> ControlClient:
    """The control API (``/_admin``) of the session's simulator."""
    return pytestconfig.stash[_RUNTIME].control


@pytest.fixture
def banksim_reset(banksim_control: ControlClient, pytestconfig: pytest.Config,
                  request: pytest.FixtureRequest) -> ControlClient:
    """A fresh bank for this test: the session's profile back, all state forgotten."""
    _mark_used(request)
    runtime = pytestconfig.stash[_RUNTIME]
    banksim_control.put_profile(runtime.profile)
    banksim_control.reset()
    request.node.stash[_EVENTS_FROM] = 0  # reset empties the timeline
    return banksim_control


@pytest.fixture(autouse=True)
def _banksim_fresh_bank(request: pytest.FixtureRequest) -> None:
    """Every test that uses the simulator starts on a fresh bank (``banksim_reset``).

    Isolation is the default because two tests that share a bank depend on each other's
    order; a reset costs two control calls. ``@pytest.mark.banksim_shared`` opts a test
    (or a module, with ``pytestmark``) out: it sees what the test before it left.
    """
    if USES_SIMULATOR not in request.fixturenames or request.node.get_closest_marker(SHARED_MARKER):
        return
    request.getfixturevalue("banksim_reset")


@pytest.fixture
def bank_api(banksim: SimulatorHandle, request: pytest.FixtureRequest) -> Iterator[BankApiClient]:
    """The bank API, signed as the handle's platform."""
    from simulator.testing.bank_api import BankApiClient

    _mark_used(request)
    with BankApiClient.for_handle(banksim) as client:
        yield client


@pytest.fixture
def banksim_sftp(banksim: SimulatorHandle, request: pytest.FixtureRequest) -> Iterator[SftpSession]:
    """An SFTP session as the handle's platform (``/upload/...``, ``/download/...``)."""
    from simulator.testing.bank_api import SftpSession

    _mark_used(request)
    with SftpSession.for_handle(banksim) as session:
        yield session


def _platform_settings(handle: SimulatorHandle, profile: dict[str, Any]) -> dict[str, Any]:
    """The platform client's settings for the handle's platform, from the running profile."""
    platform: dict[str, Any] = next(
        (p for p in profile.get("platforms", []) if p.get("app_id") == handle.app_id), {})
    wechat: dict[str, Any] = profile.get("wechat", {})
    merchant: dict[str, Any] | None = next(
        (m for m in wechat.get("merchants", []) if m.get("app_id") == handle.app_id), None)
    settings: dict[str, Any] = {
        "bank_url": handle.http_url, "admin_token": handle.admin_token, "app_id": handle.app_id,
        "app_secret": handle.secret, "sftp_host": handle.sftp_host or "127.0.0.1",
        # No SFTP (--sftp-port -1): port 0 refuses every file step with SftpUnavailable.
        "sftp_port": handle.sftp_port or 0, "sftp_username": handle.sftp_username,
        "sftp_password": handle.sftp_password or "", "clock": "bank", "notify_host": "127.0.0.1"}
    for key, source in (("merchant", "merchant"), ("supervision_account", "supervision_account"),
                        ("settlement_account", "settlement_account")):
        if platform.get(source):
            settings[key] = str(platform[source])
    if merchant is not None:
        settings.update(wechat_mchid=str(merchant["mchid"]), wechat_appid=str(merchant["appid"]),
                        wechat_api_v3_key=str(merchant["api_v3_key"]))
        if merchant.get("merchant_serial"):
            settings["wechat_serial"] = str(merchant["merchant_serial"])
        keys: dict[str, Any] = wechat.get("keys") or {}
        if keys.get("source", "dev") != "dev" or keys.get("public_key_key"):
            settings["wechat_public_key_id"] = ""  # not the published key: certificates
        elif keys.get("public_key_id"):
            settings["wechat_public_key_id"] = str(keys["public_key_id"])
    if wechat.get("cutover"):
        settings["wechat_cutover"] = str(wechat["cutover"])[:5]
    return settings


@pytest.fixture
def platform_client(banksim: SimulatorHandle, banksim_reset: ControlClient, tmp_path: Path,
                    request: pytest.FixtureRequest) -> Iterator[Context]:
    """The platform client's :class:`~platform_client.context.Context`, bound to a fresh bank.

    Its store is ``<tmp_path>/platform/platform.db``; its clock is the bank's virtual clock;
    its payment-notification endpoint (``ctx.config.notify_endpoint``, the URL given to
    WeChat with every order) listens on a free 127.0.0.1 port until the test ends. The
    WeChat settings (merchant keys, day boundary) are the profile's as the fixture starts:
    a test that changes WeChat's cutover afterwards changes the channel only.

    Example::

        def test_topup(platform_client, banksim_control):
            register_user(platform_client, "u1", identity)
            open_account(platform_client, "u1")
            create_order(platform_client, "u1", "TOPUP-u1-1", 10000)
            banksim_control.call("POST", "/wechat/orders/TOPUP-u1-1/pay", json={})
            banksim_control.advance(by="1m")          # the notification is delivered
    """
    _mark_used(request)
    try:
        from platform_client.config import ClientConfig
        from platform_client.context import Context
        from platform_client.notify import NotifyServer
    except ImportError as exc:
        pytest.fail(f"the platform_client fixture needs the platform_client package: {exc}", pytrace=False)
    settings = _platform_settings(banksim, banksim_reset.profile())
    store_dir = tmp_path / "platform"
    store_dir.mkdir(exist_ok=True)
    # Port 0 until the endpoint is bound: the real port is only known once it listens, and
    # binding first leaves no window in which another process could take a chosen number.
    config = ClientConfig(**settings, notify_port=0, store_path=str(store_dir / "platform.db"))
    ctx = Context.create(config)
    server: NotifyServer | None = None
    try:
        server = NotifyServer(ctx, host="127.0.0.1", port=0).start()
        ctx.config = config.model_copy(update={"notify_port": server.port})
        yield ctx
    finally:
        if server is not None:
            server.stop()
        ctx.close()


# -- checks and reports around each test ------------------------------------------------------


def _runtime_for(item: pytest.Item) -> _Runtime | None:
    used = _USED in item.stash or USES_SIMULATOR in getattr(item, "fixturenames", ())
    return item.config.stash.get(_RUNTIME, None) if used else None


def _mark_used(request: pytest.FixtureRequest) -> None:
    # Fixtures can be requested while the test runs (pytest-bdd steps do), so the
    # test's static fixture names are not the whole story.
    request.node.stash[_USED] = True


def _last_event_id(control: ControlClient) -> int:
    newest = control.events(newest=True, limit=1)
    return int(newest[-1]["id"]) if newest else 0


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    runtime = _runtime_for(item)
    if runtime is not None and _EVENTS_FROM not in item.stash:
        # No reset: the test's part of the timeline starts after what is there now.
        try:
            item.stash[_EVENTS_FROM] = _last_event_id(runtime.control)
        except Exception:  # the trail is a courtesy; never fail a test for it
            item.stash[_EVENTS_FROM] = 0
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    # Checked before the fixtures are torn down: the session's simulator may stop with
    # the last test.
    runtime = _runtime_for(item)
    problem: str | None = None
    if runtime is not None:
        try:
            result = runtime.control.invariants()
            if result.get("ok") is not True:
                lines = "\n".join(f"  - {v}" for v in result.get("violations", []))
                problem = f"banksim ledger invariants violated after the test:\n{lines}"
        except Exception as exc:  # ControlError, a transport error: the simulator is unwell
            problem = f"banksim invariants could not be checked after the test: {exc}"
    outcome = yield
    if problem is not None:
        raise AssertionError(problem)
    return outcome


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> _ReportWrapper:
    report = yield
    if report.when == "call" and report.failed:
        runtime = _runtime_for(item)
        if runtime is not None:
            since = item.stash.get(_EVENTS_FROM, 0)
            report.sections.append(("banksim timeline", _timeline(runtime, since)))
            report.sections.append(("banksim files", _files(runtime)))
    return report


def _timeline(runtime: _Runtime, since: int) -> str:
    from simulator.clock import from_us

    try:
        events = runtime.control.events(since_id=since, limit=TRAIL_EVENTS)
    except Exception as exc:
        return f"(timeline unavailable: {exc})"
    lines = [f"{from_us(int(e['at_us'])):%Y-%m-%d %H:%M:%S}  {e['kind']:<24} {e.get('ref') or '':<24} "
             f"{e.get('detail') or ''}" for e in events]
    more = "" if len(events) < TRAIL_EVENTS else f"\n(first {TRAIL_EVENTS} events only)"
    return "\n".join(lines) + more if lines else "(no events)"


def _files(runtime: _Runtime) -> str:
    from simulator.testing.bank_api import SftpSession

    handle = runtime.handle
    try:
        tree = runtime.control.files(handle.app_id)
    except Exception as exc:
        return f"(file listing unavailable: {exc})"
    lines: list[str] = []
    session: SftpSession | None = None
    try:
        if handle.sftp_port is not None:
            session = SftpSession.for_handle(handle, timeout=10.0)
    except Exception as exc:
        lines.append(f"(file contents unavailable over SFTP: {exc})")
    try:
        for area, entries in tree.items():
            for entry in entries:
                lines.append(f"/{area}/{entry['name']} ({entry['size']} bytes)")
                if session is None or area == "upload/images":
                    continue
                try:
                    data = session.read(f"/{area}/{entry['name']}")
                except Exception as exc:
                    lines.append(f"    (unreadable: {exc})")
                    continue
                text = data.decode("gbk", errors="replace").splitlines()
                lines.extend(f"    {line}" for line in text[:TRAIL_FILE_LINES])
                if len(text) > TRAIL_FILE_LINES:
                    lines.append(f"    ... {len(text) - TRAIL_FILE_LINES} more lines")
    finally:
        if session is not None:
            session.close()
    return "\n".join(lines) or "(no files)"
