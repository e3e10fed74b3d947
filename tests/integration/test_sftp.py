"""The SFTP endpoint over real sockets: asyncssh's client and OpenSSH's ``sftp``.

The server runs in-process in the test's own event loop (``asyncio.run`` per test) with
a ``Bank`` on ``tmp_path`` and a recording sink; OpenSSH's client runs as a subprocess
driven from that loop. Ports are picked at run time on 127.0.0.1, every wait is on an
event with a deadline, nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from asyncio import timeout
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh
import pytest

from simulator.bank import Bank
from simulator.config import Profile, load_profile, merge_patch, profile_from_dict
from simulator.sftp.server import start_sftp_server, stop_sftp_server

if TYPE_CHECKING:
    from tests.integration.conftest import BankServer, ServerStarter

pytestmark = pytest.mark.network

APP_ID = "demo-platform"
USER = "demo"
PASSWORD = "banksim-dev-sftp"
TIMEOUT_S = 30.0
SFTP_CLI = shutil.which("sftp") or "/usr/bin/sftp"
OTHER_PLATFORM: dict[str, Any] = {
    "app_id": "other-platform",
    "secret": "other-platform-secret",
    "name": "另一出行平台",
    "supervision_account": "98010078801000002",
    "settlement_account": "31010078801000002",
    "sftp": {"username": "other", "password": "other-sftp-password"},
}


# -- harness ------------------------------------------------------------------------------


class RecordingSink:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str, str, Path]] = []
        self.fail = fail

    def file_complete(self, app_id: str, area: str, name: str, path: Path) -> None:
        self.calls.append((app_id, area, name, path))
        if self.fail:
            raise RuntimeError("sink exploded")


@dataclass
class Harness:
    bank: Bank
    sink: RecordingSink
    port: int = 0
    timeline: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def jail(self) -> Path:
        return self.jail_of(APP_ID)

    def jail_of(self, app_id: str) -> Path:
        root = getattr(self.bank, "files_root", None)
        base = root if isinstance(root, Path) else Path(str(self.bank.state_dir)) / "sftp"
        return base / app_id

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.bank.events(kind=kind, limit=10_000)]

    async def wait_event(self, kind: str, predicate: Callable[[dict[str, Any]], bool]) -> None:
        """Until an event of ``kind`` whose detail satisfies ``predicate`` is recorded."""
        while not any(k == kind and predicate(d) for k, d in self.timeline):
            self.changed.clear()
            await self.changed.wait()

    def connect(self, username: str = USER, password: str | None = PASSWORD,
                **kwargs: Any) -> Any:
        """``asyncssh.connect`` to this server: await it, or use it with ``async with``."""
        return asyncssh.connect("127.0.0.1", self.port, username=username, password=password,
                                known_hosts=None, client_keys=kwargs.pop("client_keys", None),
                                agent_path=None, config=None, gss_host=None, **kwargs)

    @contextlib.asynccontextmanager
    async def session(self, username: str = USER, password: str | None = PASSWORD,
                      **kwargs: Any) -> AsyncIterator[asyncssh.SFTPClient]:
        async with self.connect(username, password, **kwargs) as conn, \
                conn.start_sftp_client() as sftp:
            yield sftp


def make_profile(patch: dict[str, Any] | None = None) -> Profile:
    base = load_profile(None)
    return profile_from_dict(merge_patch(base.as_dict(), patch)) if patch else base


def two_platforms() -> dict[str, Any]:
    first = load_profile(None).as_dict()["platforms"][0]
    return {"platforms": [first, OTHER_PLATFORM]}


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Harness]]:
    banks: list[Bank] = []

    def make(patch: dict[str, Any] | None = None, sink: RecordingSink | None = None) -> Harness:
        bank = Bank(make_profile(patch), tmp_path / f"state-{len(banks)}")
        banks.append(bank)
        h = Harness(bank, sink or RecordingSink())
        original = bank.event

        def event(kind: str, **kwargs: Any) -> None:
            original(kind, **kwargs)
            h.timeline.append((kind, kwargs.get("detail") or {}))
            h.changed.set()

        monkeypatch.setattr(bank, "event", event)
        return h

    yield make
    for bank in banks:
        bank.close()


def run(h: Harness, scenario: Callable[[Harness], Awaitable[None]]) -> None:
    """Serve SFTP for ``h`` in a fresh loop, run the scenario, stop; all within a deadline."""

    async def main() -> None:
        h.changed = asyncio.Event()
        acceptor = await start_sftp_server(h.bank, "127.0.0.1", 0, h.sink)
        h.port = acceptor.get_port()
        try:
            async with timeout(TIMEOUT_S):
                await scenario(h)
        finally:
            await stop_sftp_server(acceptor)

    asyncio.run(main())


async def put_bytes(sftp: asyncssh.SFTPClient, path: str, data: bytes) -> None:
    async with sftp.open(path, "wb") as f:
        await f.write(data)


def no_secrets(h: Harness, *secrets: str) -> None:
    for e in h.bank.events(kind="sftp.", limit=10_000):
        text = repr(e)
        for secret in secrets:
            assert secret not in text, f"a secret reached the timeline: {e}"


# -- logins ---------------------------------------------------------------------------------


def test_password_login_sees_its_layout(harness: Callable[..., Harness]) -> None:
    h = harness()

    async def scenario(h: Harness) -> None:
        async with h.session() as sftp:
            assert sorted(await sftp.listdir("/")) == [".", "..", "download", "upload"]
            assert sorted(await sftp.listdir("/upload")) == [".", "..", "batches", "images"]
            assert sorted(await sftp.listdir("download")) == [".", "..", "returns", "statements"]
            assert await sftp.realpath(".") == "/"
            assert await sftp.isdir("/download/returns")

    run(h, scenario)
    logins = h.events("sftp.login")
    assert [(e["app_id"], e["detail"]["method"]) for e in logins] == [(APP_ID, "password")]
    no_secrets(h, PASSWORD)


@pytest.mark.parametrize(("username", "password", "reason"), [
    (USER, "not-the-password", "wrong password"),
    ("nobody", PASSWORD, "unknown user"),
])
def test_bad_credentials_are_refused(harness: Callable[..., Harness], username: str,
                                     password: str, reason: str) -> None:
    h = harness()

    async def scenario(h: Harness) -> None:
        with pytest.raises(asyncssh.PermissionDenied):
            async with h.connect(username, password):
                pass
        async with h.session() as sftp:  # the server goes on
            assert "upload" in await sftp.listdir("/")

    run(h, scenario)
    refused = h.events("sftp.login_refused")
    assert reason in [e["detail"]["reason"] for e in refused]
    no_secrets(h, password, PASSWORD)


def test_keyboard_interactive_is_not_offered(harness: Callable[..., Harness]) -> None:
    h = harness()

    async def scenario(h: Harness) -> None:
        with pytest.raises(asyncssh.PermissionDenied):
            async with h.connect(preferred_auth="keyboard-interactive"):
                pass

    run(h, scenario)
    assert not h.events("sftp.login")


def test_public_key_login_and_wrong_key(harness: Callable[..., Harness]) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    wrong = asyncssh.generate_private_key("ssh-ed25519")
    line = key.export_public_key().decode().strip()
    h = harness({"platforms": [{**load_profile(None).as_dict()["platforms"][0],
                                "sftp": {"username": USER, "authorized_keys": [line]}}]})

    async def scenario(h: Harness) -> None:
        async with h.session(password=None, client_keys=[key]) as sftp:
            assert "upload" in await sftp.listdir("/")
        with pytest.raises(asyncssh.PermissionDenied):
            async with h.connect(password=None, client_keys=[wrong]):
                pass
        # This user has no password at all.
        with pytest.raises(asyncssh.PermissionDenied):
            async with h.connect(password=PASSWORD):
                pass

    run(h, scenario)
    assert [e["detail"]["method"] for e in h.events("sftp.login")] == ["publickey"]
    reasons = [e["detail"]["reason"] for e in h.events("sftp.login_refused")]
    assert "public key not authorized" in reasons and "wrong password" in reasons
    no_secrets(h, line.split()[1], PASSWORD)


def test_profile_changes_apply_to_the_next_login(harness: Callable[..., Harness]) -> None:
    h = harness()

    async def scenario(h: Harness) -> None:
        h.bank.patch_profile({"platforms": [{**h.bank.profile.as_dict()["platforms"][0],
                                             "sftp": {"username": USER,
                                                      "password": "a-new-password"}}]})
        with pytest.raises(asyncssh.PermissionDenied):
            async with h.connect():
                pass
        async with h.session(password="a-new-password") as sftp:
            assert "upload" in await sftp.listdir("/")

    run(h, scenario)


def test_refuse_login_rate_one_refuses_every_login(harness: Callable[..., Harness]) -> None:
    h = harness({"sftp": {"refuse_login_rate": 1.0}})

    async def scenario(h: Harness) -> None:
        for _ in range(2):
            with pytest.raises(asyncssh.PermissionDenied):
                async with h.connect():
                    pass

    run(h, scenario)
    assert not h.events("sftp.login")
    reasons = [e["detail"]["reason"] for e in h.events("sftp.login_refused")]
    assert reasons.count("refused by sftp.refuse_login_rate") == 2


# -- completion -----------------------------------------------------------------------------


def test_temp_name_then_rename_hands_over_exactly_once(harness: Callable[..., Harness]) -> None:
    h = harness()
    name = "DF_DEMO01_20260105_001.txt"

    async def scenario(h: Harness) -> None:
        async with h.session() as sftp:
            await put_bytes(sftp, f"/upload/batches/{name}.part", b"H|1\n")
            assert h.sink.calls == []  # a closed temp file is not complete
            await sftp.rename(f"/upload/batches/{name}.part", f"/upload/batches/{name}")
            assert len(h.sink.calls) == 1
            await sftp.stat(f"/upload/batches/{name}")
            assert sorted(await sftp.listdir("/upload/batches")) == [".", "..", name]

    run(h, scenario)
    path = h.jail / "upload" / "batches" / name
    assert h.sink.calls == [(APP_ID, "batches", name, path)]
    assert path.read_bytes() == b"H|1\n"
    [done] = h.events("sftp.upload_complete")
    assert done["detail"] == {"area": "batches", "name": name, "bytes": 4, "via": "rename"}


def test_final_name_then_close_hands_over_exactly_once(harness: Callable[..., Harness]) -> None:
    h = harness()

    async def scenario(h: Harness) -> None:
        async with h.session() as sftp:
            f = await sftp.open("/upload/images/front.jpg", "wb")
            await f.write(b"\xff\xd8" + b"x" * 2000)
            await f.write(b"tail", 2002)
            assert h.sink.calls == []  # still open
            await f.close()
            assert len(h.sink.calls) == 1
            # An accepted file is never overwritten, renamed or removed.
            with pytest.raises(asyncssh.SFTPFailure, match="file exists"):
                await sftp.open("/upload/images/front.jpg", "wb")
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.remove("/upload/images/front.jpg")
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.rename("/upload/images/front.jpg", "/upload/images/other.jpg")

    run(h, scenario)
    path = h.jail / "upload" / "images" / "front.jpg"
    assert h.sink.calls == [(APP_ID, "images", "front.jpg", path)]
    assert path.stat().st_size == 2006


def test_temp_file_alone_is_never_handed_over(harness: Callable[..., Harness]) -> None:
    h = harness()

    async def scenario(h: Harness) -> None:
        async with h.session() as sftp:
            for name in ("a.txt.tmp", "b.txt.part", ".c.txt"):
                await put_bytes(sftp, f"/upload/batches/{name}", b"data")
            await sftp.rename("/upload/batches/a.txt.tmp", "/upload/batches/a2.txt.part")
            await sftp.remove("/upload/batches/b.txt.part")

    run(h, scenario)
    assert h.sink.calls == []
    assert sorted(os.listdir(h.jail / "upload" / "batches")) == [".c.txt", "a2.txt.part"]


def test_rename_onto_an_existing_name_is_refused(harness: Callable[..., Harness]) -> None:
    h = harness()

    async def scenario(h: Harness) -> None:
        async with h.session() as sftp:
            await put_bytes(sftp, "/upload/batches/f.txt.part", b"one")
            await sftp.rename("/upload/batches/f.txt.part", "/upload/batches/f.txt")
            await put_bytes(sftp, "/upload/batches/f.txt.part", b"two")
            with pytest.raises(asyncssh.SFTPFailure, match="file exists") as refused:
                await sftp.rename("/upload/batches/f.txt.part", "/upload/batches/f.txt")
            assert refused.value.code == asyncssh.FX_FAILURE
            with pytest.raises(asyncssh.SFTPFailure, match="file exists"):
                await sftp.posix_rename("/upload/batches/f.txt.part", "/upload/batches/f.txt")

    run(h, scenario)
    assert len(h.sink.calls) == 1
    assert (h.jail / "upload" / "batches" / "f.txt").read_bytes() == b"one"


def test_rename_of_a_file_still_open_is_refused(harness: Callable[..., Harness]) -> None:
    h = harness()

    async def scenario(h: Harness) -> None:
        async with h.session() as sftp:
            f = await sftp.open("/upload/batches/g.txt.part", "wb")
            await f.write(b"half")
            with pytest.raises(asyncssh.SFTPFailure, match="still open"):
                await sftp.rename("/upload/batches/g.txt.part", "/upload/batches/g.txt")
            async with h.session() as other:
                with pytest.raises(asyncssh.SFTPFailure, match="already open"):
                    await other.open("/upload/batches/g.txt.part", "wb")
            await f.close()
            await sftp.rename("/upload/batches/g.txt.part", "/upload/batches/g.txt")

    run(h, scenario)
    assert [c[2] for c in h.sink.calls] == ["g.txt"]


def test_a_sink_that_raises_keeps_the_file_and_the_session(harness: Callable[..., Harness]) -> None:
    h = harness(sink=RecordingSink(fail=True))

    async def scenario(h: Harness) -> None:
        async with h.session() as sftp:
            await put_bytes(sftp, "/upload/batches/s.txt.part", b"x")
            await sftp.rename("/upload/batches/s.txt.part", "/upload/batches/s.txt")
            await put_bytes(sftp, "/upload/images/i.jpg", b"y")
            assert "s.txt" in await sftp.listdir("/upload/batches")

    run(h, scenario)
    assert [c[2] for c in h.sink.calls] == ["s.txt", "i.jpg"]
    assert (h.jail / "upload" / "batches" / "s.txt").exists()


# -- policy ---------------------------------------------------------------------------------


def test_download_is_read_only_and_readable(harness: Callable[..., Harness]) -> None:
    h = harness()
    returns = h.jail / "download" / "returns"
    returns.mkdir(parents=True, exist_ok=True)
    (returns / "RT_1.txt").write_bytes(b"return file")

    async def scenario(h: Harness) -> None:
        async with h.session() as sftp:
            with pytest.raises(asyncssh.SFTPPermissionDenied, match="read-only"):
                await put_bytes(sftp, "/download/returns/x.txt", b"no")
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.remove("/download/returns/RT_1.txt")
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.rename("/download/returns/RT_1.txt", "/download/returns/r.tmp")
            async with sftp.open("/download/returns/RT_1.txt", "rb") as f:
                data: object = await f.read()
                assert data == b"return file"
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await put_bytes(sftp, "/x.txt", b"no")
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.mkdir("/upload/images/sub")
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.rmdir("/download/statements")
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.stat("/etc/passwd")  # that is <jail>/etc/passwd

    run(h, scenario)
    assert (returns / "RT_1.txt").read_bytes() == b"return file"
    assert not (h.jail / "download" / "returns" / "x.txt").exists()
    assert len(h.events("sftp.refused")) >= 6


def test_setstat_accepts_only_times_and_permissions(harness: Callable[..., Harness]) -> None:
    h = harness()

    async def scenario(h: Harness) -> None:
        async with h.session() as sftp:
            await put_bytes(sftp, "/upload/batches/t.txt.part", b"12345")
            await sftp.chmod("/upload/batches/t.txt.part", 0o777)
            await sftp.utime("/upload/batches/t.txt.part", (1, 1))
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.truncate("/upload/batches/t.txt.part", 1)
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.chown("/upload/batches/t.txt.part", 0, 0)

    run(h, scenario)
    local = h.jail / "upload" / "batches" / "t.txt.part"
    assert local.stat().st_size == 5 and local.stat().st_mode & 0o777 == 0o644


def test_escapes_and_links_are_refused_and_the_server_goes_on(
        harness: Callable[..., Harness], tmp_path: Path) -> None:
    h = harness()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    os.symlink(outside, h.jail / "download" / "returns" / "planted")
    os.symlink(outside / "secret.txt", h.jail / "download" / "statements" / "s.txt")

    async def scenario(h: Harness) -> None:
        async with h.session() as sftp:
            for call in (lambda: sftp.open("/../../etc/passwd"),
                         lambda: sftp.listdir("/.."),
                         lambda: sftp.realpath(".."),
                         lambda: sftp.stat("upload/../../x"),
                         lambda: put_bytes(sftp, "/../../tmp/x", b"x"),
                         lambda: sftp.symlink("/upload/images", "/upload/images/l.tmp"),
                         lambda: sftp.link("/download/returns", "/upload/images/h.tmp"),
                         lambda: sftp.open("/download/returns/planted/secret.txt"),
                         lambda: sftp.listdir("/download/returns/planted"),
                         lambda: sftp.open("/download/statements/s.txt"),
                         lambda: sftp.readlink("/download/statements/s.txt")):
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    await call()
            # The links are listed as what they are, never followed.
            names = await sftp.listdir("/download/returns")
            assert "planted" in names
        async with h.session() as sftp:  # a second session works
            await put_bytes(sftp, "/upload/images/ok.jpg", b"fine")

    run(h, scenario)
    assert [c[2] for c in h.sink.calls] == ["ok.jpg"]
    assert (outside / "secret.txt").read_text() == "secret"


def test_oversized_upload_is_refused_and_removed(harness: Callable[..., Harness]) -> None:
    h = harness({"sftp": {"max_upload_bytes": 1000}})

    async def scenario(h: Harness) -> None:
        async with h.session() as sftp:
            with pytest.raises(asyncssh.SFTPFailure, match="file exceeds the upload limit"):
                await put_bytes(sftp, "/upload/batches/big.txt", b"x" * 5000)
            with pytest.raises(asyncssh.SFTPFailure, match="file exceeds the upload limit"):
                f = await sftp.open("/upload/batches/big2.txt.part", "wb")
                await f.write(b"x" * 600)
                await f.write(b"y" * 600, 600)
            await f.close()
            assert sorted(await sftp.listdir("/upload/batches")) == [".", ".."]
            await put_bytes(sftp, "/upload/batches/small.txt", b"x" * 1000)  # at the limit

    run(h, scenario)
    assert [c[2] for c in h.sink.calls] == ["small.txt"]
    assert sorted(os.listdir(h.jail / "upload" / "batches")) == ["small.txt"]
    reasons = [e["detail"]["reason"] for e in h.events("sftp.refused")]
    assert sum("upload limit" in r for r in reasons) == 2


def test_drop_upload_rate_one_drops_and_hands_nothing_over(harness: Callable[..., Harness]) -> None:
    h = harness({"sftp": {"drop_upload_rate": 1.0}})

    async def scenario(h: Harness) -> None:
        async with h.connect() as conn, conn.start_sftp_client() as sftp:
            with pytest.raises((asyncssh.SFTPError, asyncssh.Error, OSError)):
                await put_bytes(sftp, "/upload/batches/d.txt", b"x" * 100_000)
        async with h.session() as sftp:  # a later session still logs in
            assert await sftp.listdir("/upload/batches") in (
                [".", ".."], ["..", "."])

    run(h, scenario)
    assert h.sink.calls == []
    assert os.listdir(h.jail / "upload" / "batches") == []
    assert any("drop_upload_rate" in e["detail"]["reason"] for e in h.events("sftp.refused"))


def test_a_session_ending_without_close_leaves_nothing(harness: Callable[..., Harness]) -> None:
    h = harness()

    async def scenario(h: Harness) -> None:
        conn = await h.connect()
        sftp = await conn.start_sftp_client()
        f = await sftp.open("/upload/images/cut.jpg", "wb")
        await f.write(b"partial")
        conn.abort()
        await h.wait_event("sftp.refused", lambda d: "before the file was closed" in d["reason"])

    run(h, scenario)
    assert h.sink.calls == []
    assert os.listdir(h.jail / "upload" / "images") == []


def test_platforms_cannot_see_each_other(harness: Callable[..., Harness]) -> None:
    h = harness(two_platforms())

    async def scenario(h: Harness) -> None:
        async with h.session() as sftp:
            await put_bytes(sftp, "/upload/batches/mine.txt", b"demo's")
        async with h.session("other", "other-sftp-password") as sftp:
            assert await sftp.listdir("/upload/batches") in ([".", ".."], ["..", "."])
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.open(f"/../{APP_ID}/upload/batches/mine.txt")
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.open(f"/{APP_ID}/upload/batches/mine.txt")
            await put_bytes(sftp, "/upload/batches/theirs.txt", b"other's")

    run(h, scenario)
    assert sorted((c[0], c[2]) for c in h.sink.calls) == [(APP_ID, "mine.txt"),
                                                         ("other-platform", "theirs.txt")]
    assert (h.jail_of("other-platform") / "upload" / "batches" / "theirs.txt").exists()


def test_host_key_is_kept_in_the_state_dir(harness: Callable[..., Harness]) -> None:
    h = harness()
    keys: list[bytes] = []

    async def scenario(h: Harness) -> None:
        async with h.connect() as conn:
            key = conn.get_server_host_key()
            assert key is not None
            keys.append(key.public_data)

    run(h, scenario)
    run(h, scenario)
    key_file = Path(str(h.bank.state_dir)) / "ssh_host_ed25519_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert keys[0] == keys[1] == asyncssh.read_private_key(key_file).public_data


# -- OpenSSH's sftp -------------------------------------------------------------------------


@dataclass
class OpenSsh:
    h: Harness
    key_file: Path
    workdir: Path

    async def batch(self, *commands: str) -> tuple[int, str]:
        """Run ``sftp -b`` with these commands; returns (exit status, stderr+stdout)."""
        batch_file = self.workdir / "batch.txt"
        batch_file.write_text("\n".join(commands) + "\n")
        process = await asyncio.create_subprocess_exec(
            SFTP_CLI, "-b", str(batch_file), "-P", str(self.h.port), "-F", "/dev/null",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no",
            "-i", str(self.key_file), f"{USER}@127.0.0.1",
            cwd=self.workdir, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(process.communicate(), TIMEOUT_S / 2)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        return int(process.returncode or 0), (err + out).decode("utf-8", "replace")


@pytest.mark.skipif(not os.path.exists(SFTP_CLI), reason="OpenSSH sftp client not installed")
def test_openssh_sftp_client(harness: Callable[..., Harness], tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_file = tmp_path / "id_ed25519"
    key.write_private_key(key_file)
    key_file.chmod(0o600)
    platform = load_profile(None).as_dict()["platforms"][0]
    h = harness({"platforms": [{**platform, "sftp": {
        "username": USER, "password": PASSWORD,
        "authorized_keys": [key.export_public_key().decode().strip()]}}]})
    workdir = tmp_path / "local"
    workdir.mkdir()
    (workdir / "DF_DEMO01_20260105_001.txt").write_bytes(b"H|batch\n")
    (workdir / "front.jpg").write_bytes(b"\xff\xd8" + b"j" * 3000)
    (workdir / "x").write_bytes(b"x")
    returns = h.jail / "download" / "returns"
    returns.mkdir(parents=True, exist_ok=True)
    (returns / "RT_1.txt").write_bytes(b"returned")

    async def scenario(h: Harness) -> None:
        cli = OpenSsh(h, key_file, workdir)
        status, output = await cli.batch(
            "cd upload/batches",
            "put DF_DEMO01_20260105_001.txt DF_DEMO01_20260105_001.txt.part",
            "rename DF_DEMO01_20260105_001.txt.part DF_DEMO01_20260105_001.txt",
            "cd /upload/images",
            "put front.jpg",
            "ls -l",
            "get /download/returns/RT_1.txt",
            "bye")
        assert status == 0, output
        assert (workdir / "RT_1.txt").read_bytes() == b"returned"
        assert sorted(c[2] for c in h.sink.calls) == ["DF_DEMO01_20260105_001.txt", "front.jpg"]

        # (command, what OpenSSH prints, the reason on the bank's timeline)
        refusals = [
            ("cd ..", "path leaves the jail", "path leaves the jail"),
            ("get /../../etc/passwd", "not found", "path leaves the jail"),
            ("put x /../../tmp/x", "Permission denied", "path leaves the jail"),
            ("ln -s /upload/images /upload/images/l.tmp", "Permission denied",
             "links cannot be created"),
            ("put x /download/returns/x", "Permission denied", "/download is read-only"),
            ("mkdir /upload/images/sub", "", "directories cannot be created"),
            ("put DF_DEMO01_20260105_001.txt /upload/batches/DF_DEMO01_20260105_001.txt",
             "Failure", "file exists"),
        ]
        for command, message, reason in refusals:
            status, output = await cli.batch(command)
            assert status != 0 and message in output, (command, output)
            last = h.events("sftp.refused")[-1]["detail"]
            assert reason in last["reason"], (command, last)
        status, output = await cli.batch("ls /upload/batches", "bye")  # still serving
        assert status == 0 and "DF_DEMO01_20260105_001.txt" in output, output

    run(h, scenario)
    assert len(h.sink.calls) == 2
    assert not (h.jail / "download" / "returns" / "x").exists()
    assert {e["detail"]["method"] for e in h.events("sftp.login")} == {"publickey"}


# -- `banksim serve` --------------------------------------------------------------------------


def _port_file(server: BankServer) -> dict[str, Any]:
    [path] = [p for p in server.workdir.glob("port-*.json")
              if json.loads(p.read_text())["http"] == server.port]
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_serve_runs_sftp_beside_http(start_bank_server: ServerStarter) -> None:
    server = start_bank_server(extra_args=["--sftp-port", "0"])
    port = _port_file(server)["sftp"]
    assert isinstance(port, int) and port > 0
    banner = server.log_text()
    assert f"SFTP      sftp://127.0.0.1:{port}" in banner
    assert f"username={USER} password={PASSWORD}" in banner

    async def scenario() -> None:
        async with timeout(TIMEOUT_S), asyncssh.connect(
                "127.0.0.1", port, username=USER, password=PASSWORD, known_hosts=None,
                client_keys=None, agent_path=None, config=None, gss_host=None) as conn, \
                conn.start_sftp_client() as sftp:
            assert sorted(await sftp.listdir("/upload")) == [".", "..", "batches", "images"]
            await put_bytes(sftp, "/upload/batches/DF_DEMO01_20260105_009.txt.part", b"H\n")
            await sftp.rename("/upload/batches/DF_DEMO01_20260105_009.txt.part",
                              "/upload/batches/DF_DEMO01_20260105_009.txt")

    asyncio.run(scenario())
    events = server.admin.get("/events", params={"kind": "sftp.", "limit": 100}).json()
    kinds = [e["kind"] for e in events]
    assert "sftp.login" in kinds and "sftp.upload_complete" in kinds, kinds


def test_serve_without_sftp(start_bank_server: ServerStarter) -> None:
    server = start_bank_server(extra_args=["--sftp-port", "-1"])
    assert _port_file(server)["sftp"] is None
    assert "SFTP " not in server.log_text()
