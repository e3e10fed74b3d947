"""SFTP upload throughput: ``banksim serve`` against OpenSSH's own sftp server.

``upload``: OpenSSH's ``sftp`` client (batch mode, public key) puts the same file of
random bytes — 200 MB, quick 50 MB — to each server over 127.0.0.1, five times each
(quick: three), alternating which server goes first in each round. The figure is the
median MB/s (10^6 bytes/s) of the ``put`` itself: the batch stamps the client's clock
right before and after it (``!date +%s.%N``), so the SSH handshake (sshd re-executes
itself per connection: ~0.2 s, banksim ~0.06 s) is left out; whole-session rates are in
the notes. The baseline is OpenSSH's ``sshd`` with ``internal-sftp``, in the same run.

* baseline: ``/usr/sbin/sshd -f <temp cfg> -D -e`` on a free port, with a host key, an
  ``authorized_keys`` file and a client key generated for the run (no PAM, no
  passwords). It does not use or start the system's ssh service. Without
  ``/usr/sbin/sshd`` the figure is SKIPPED: install ``openssh-server`` to measure it.
* banksim: ``banksim serve --ephemeral --http-port 0 --sftp-port 0 --port-file F
  --profile P``, where ``P`` gives the demo platform's SFTP user the same client key and
  raises ``sftp.max_upload_bytes`` above the file size. Each upload goes to
  ``/upload/batches/<name>.part``; a second, untimed ``sftp`` call checks its size and
  renames it to a final name that is not a batch name, which the bank's intake rejects.

Neither side is told which cipher to use; the negotiated ones (``sftp -v``) are in the
notes. Every uploaded size is checked on both sides; a wrong size fails the figure. As
root, sshd needs ``/run/sshd`` (normally made by the system service): when it is missing
the benchmark creates it and removes it afterwards.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bench.common import ROOT, Context, Figure, check, free_port, median
from bench.workload import banksim_exe, banksim_unavailable

NAME = "sftp"
SSHD = Path("/usr/sbin/sshd")
SSHD_MISSING = "install openssh-server (apt-get install -y openssh-server) to measure the baseline"
PRIVSEP_DIR = Path("/run/sshd")  # sshd (as root) refuses to start without it
TIMEOUT_S = 300.0
READY_TIMEOUT_S = 30.0
ROUNDS = 5  # full run; quick: 3. Uploads take ~1 s each and a 2-core machine is noisy
QUICK_ROUNDS = 3
TARGET_RATIO = 0.8
SFTP_USER = "demo"  # the demo platform's SFTP user in the packaged profile
CIPHER_RE = re.compile(r"kex: client->server cipher: (\S+) MAC: (\S+)")
STAMP = "!date +%s.%N"  # a local command in the sftp batch: the client's wall clock
STAMP_RE = re.compile(r"\d+\.\d+")


class BenchError(RuntimeError):
    pass


# --- processes ----------------------------------------------------------------------------

def _cpu_seconds(pid: int, children: bool) -> float | None:
    """utime+stime of ``pid`` (plus its reaped children's when asked), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def _child_pids(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(entry.name))
    return out


@dataclass
class Proc:
    """A server process with its log file; ``stop()`` ends it (SIGINT/SIGTERM, then SIGKILL)."""

    label: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]
    port: int = 0
    with_children: bool = False  # sshd forks a process per connection; count its CPU too

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def cpu(self) -> float | None:
        if self.with_children:
            # The per-connection processes are counted once reaped: wait for them (bounded).
            deadline = time.monotonic() + 5
            while _child_pids(self.proc.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        return _cpu_seconds(self.proc.pid, self.with_children)

    def stop(self, sig: int = signal.SIGINT) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log_file.close()


def _launch(label: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> Proc:
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed by Proc.stop
    try:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=log_file, stderr=subprocess.STDOUT)
    except OSError:
        log_file.close()
        raise
    return Proc(label, proc, log_path, log_file)


def _ssh_banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _wait(server: Proc, ready: object) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not server.alive():
            raise BenchError(f"{server.label} exited with {server.proc.returncode}:\n"
                             f"{server.log_tail()}")
        if callable(ready) and ready():
            return
        time.sleep(0.02)
    raise BenchError(f"{server.label} not ready after {READY_TIMEOUT_S:g} s:\n{server.log_tail()}")


# --- keys, configs, servers ---------------------------------------------------------------

def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "banksim-bench",
                    "-f", str(path)], check=True, capture_output=True, timeout=60)


def _start_sshd(tmp: Path, client_pub: str) -> Proc:
    keys = tmp / "sshd"
    keys.mkdir()
    _keygen(keys / "ssh_host_ed25519_key")
    (keys / "authorized_keys").write_text(client_pub + "\n")
    port = free_port()
    root = os.geteuid() == 0
    config = [
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {keys / 'ssh_host_ed25519_key'}",
        f"AuthorizedKeysFile {keys / 'authorized_keys'}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        f"PidFile {keys / 'sshd.pid'}",
        "Subsystem sftp internal-sftp",
        f"AllowUsers {getpass.getuser()}",
        *(["PermitRootLogin prohibit-password"] if root else []),
    ]
    cfg = keys / "sshd_config"
    cfg.write_text("\n".join(config) + "\n")
    server = _launch("sshd", [str(SSHD), "-f", str(cfg), "-D", "-e"], tmp / "sshd.log")
    server.port, server.with_children = port, True
    try:
        _wait(server, lambda: _ssh_banner(port))
    except BaseException:
        server.stop(signal.SIGTERM)
        raise
    return server


def _banksim_profile(path: Path, client_pub: str, limit: int) -> None:
    from simulator.config import load_profile

    platform = load_profile(None).as_dict()["platforms"][0]
    sftp = dict(platform.get("sftp") or {})
    if sftp.get("username") != SFTP_USER:
        raise BenchError(f"the default platform's SFTP user is {sftp.get('username')!r}, "
                         f"not {SFTP_USER!r}")
    sftp["authorized_keys"] = [*sftp.get("authorized_keys", []), client_pub]
    platform["sftp"] = sftp
    profile = {"platforms": [platform], "sftp": {"max_upload_bytes": limit}}
    # JSON is YAML: the profile loader reads it as it is.
    path.write_text(json.dumps(profile, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _start_banksim(tmp: Path, client_pub: str, limit: int) -> Proc:
    profile, port_file = tmp / "profile.yaml", tmp / "ports.json"
    _banksim_profile(profile, client_pub, limit)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    server = _launch("banksim", [str(banksim_exe()), "serve", "--ephemeral", "--http-port", "0",
                                 "--sftp-port", "0", "--port-file", str(port_file),
                                 "--profile", str(profile)], tmp / "banksim.log", env)
    try:
        _wait(server, port_file.exists)
        time.sleep(0.05)  # written in one call; let it land
        server.port = int(json.loads(port_file.read_text())["sftp"])
        _wait(server, lambda: _ssh_banner(server.port))
    except BaseException:
        server.stop()
        raise
    return server


# --- the client -----------------------------------------------------------------------------

@dataclass
class Session:
    seconds: float
    client_cpu_s: float
    stdout: str
    stderr: str


def _sftp(key: Path, port: int, user: str, commands: list[str], batch: Path,
          verbose: bool = False) -> Session:
    batch.write_text("\n".join(commands) + "\n")
    argv = ["sftp", "-F", "/dev/null", "-b", str(batch), "-i", str(key), "-P", str(port),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            *(["-v"] if verbose else ["-o", "LogLevel=ERROR"]), f"{user}@127.0.0.1"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, timeout=TIMEOUT_S, check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    stdout, stderr = out.stdout.decode(errors="replace"), out.stderr.decode(errors="replace")
    if out.returncode != 0:
        last = (stderr.strip().splitlines() or ["(no stderr)"])[-1]
        raise BenchError(f"sftp to port {port} exited {out.returncode} on {commands!r}: "
                         f"{last}\n{stderr[-2000:]}{stdout[-1000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Session(seconds, cpu, stdout, stderr)


def _listed_size(listing: str, name: str) -> int | None:
    for line in listing.splitlines():
        fields = line.split()
        if not line.startswith("sftp>") and len(fields) >= 9 and fields[-1].endswith(name):
            return int(fields[4]) if fields[4].isdigit() else None
    return None


def _stamps(stdout: str) -> list[float]:
    return [float(line) for line in stdout.splitlines() if STAMP_RE.fullmatch(line.strip())]


@dataclass
class Side:
    label: str
    server: Proc
    user: str
    target_dir: str  # remote directory
    put_s: list[float] = field(default_factory=list)  # the put alone: the figure
    session_s: list[float] = field(default_factory=list)  # the whole sftp call
    server_cpu: list[float] = field(default_factory=list)  # per put, handshake CPU taken off
    client_cpu: list[float] = field(default_factory=list)
    cipher: str = "?"
    handshake_s: float = 0.0
    handshake_cpu: float = 0.0

    def rate(self, size: int) -> float:
        return size / median(self.put_s) / 1e6


def _probe(ctx: Context, side: Side, key: Path, tmp: Path) -> None:
    """Untimed ``sftp`` sessions: the negotiated cipher, the handshake's time and CPU."""
    session = _sftp(key, side.server.port, side.user, [f"ls -l {side.target_dir}"],
                    tmp / "probe.batch", verbose=True)
    match = CIPHER_RE.search(session.stderr)
    side.cipher = f"{match[1]} (MAC {match[2]})" if match else "not reported"
    times, cpus = [], []
    for _ in range(3):
        cpu0 = side.server.cpu()
        times.append(_sftp(key, side.server.port, side.user, ["pwd"], tmp / "probe.batch").seconds)
        cpu1 = side.server.cpu()
        if cpu0 is not None and cpu1 is not None:
            cpus.append(cpu1 - cpu0)
    side.handshake_s = median(times)
    side.handshake_cpu = median(cpus) if cpus else 0.0
    ctx.log(f"{side.label}: cipher {side.cipher}; an sftp session doing nothing takes "
            f"{side.handshake_s:.3f} s, server CPU {side.handshake_cpu:.3f} s")


def _upload(ctx: Context, side: Side, key: Path, data: Path, size: int, tmp: Path,
            name: str) -> None:
    remote = f"{side.target_dir}/{name}"
    is_bank = side.label == "banksim"
    if is_bank:
        remote += ".part"
    cpu0 = side.server.cpu()
    # The client stamps the clock right before and after the put, so the handshake is
    # not in the figure (it is in the session time, in the notes).
    session = _sftp(key, side.server.port, side.user, [STAMP, f"put {data} {remote}", STAMP],
                    tmp / "put.batch")
    cpu1 = side.server.cpu()
    if not side.server.alive():
        raise BenchError(f"{side.label} died during the upload:\n{side.server.log_tail()}")
    stamps = _stamps(session.stdout)
    if len(stamps) != 2 or stamps[1] <= stamps[0]:
        raise BenchError(f"{side.label}: no timestamps around the put in {session.stdout[-500:]!r}")
    put_s = stamps[1] - stamps[0]
    side.put_s.append(put_s)
    side.session_s.append(session.seconds)
    side.client_cpu.append(session.client_cpu_s)
    if cpu0 is not None and cpu1 is not None:
        side.server_cpu.append(max(0.0, cpu1 - cpu0 - side.handshake_cpu))
    # Untimed: check the size; banksim also gets the rename that completes the upload.
    if is_bank:
        check_session = _sftp(key, side.server.port, side.user,
                              [f"ls -ln {remote}", f"rename {remote} {side.target_dir}/{name}"],
                              tmp / "check.batch")
        got = _listed_size(check_session.stdout, name + ".part")
    else:
        local = Path(remote)
        got = local.stat().st_size if local.exists() else None
        local.unlink(missing_ok=True)
    os.sync()  # the next upload does not pay for this one's writeback
    ctx.log(f"{side.label} #{len(side.put_s)}: put {put_s:.2f} s = {size / put_s / 1e6:.1f} MB/s "
            f"(session {session.seconds:.2f} s), server CPU "
            f"{side.server_cpu[-1] if side.server_cpu else float('nan'):.2f} s, "
            f"client CPU {session.client_cpu_s:.2f} s, size {got}")
    if got != size:
        raise BenchError(f"{side.label}: uploaded {got} bytes, expected {size}")


def _random_file(path: Path, size: int) -> None:
    chunk = 1 << 20
    with open(path, "wb") as fh:
        left = size
        while left:
            n = min(chunk, left)
            fh.write(os.urandom(n))
            left -= n


def _side_notes(side: Side, size: int) -> str:
    put = median(side.put_s)
    cpu = median(side.server_cpu) if side.server_cpu else None
    server = "?" if cpu is None else f"{cpu:.2f} s ({100 * cpu / put:.0f}% of a core)"
    return (f"{side.label}: puts {', '.join(f'{size / s / 1e6:.0f}' for s in side.put_s)} MB/s "
            f"(whole sessions {size / median(side.session_s) / 1e6:.0f} MB/s), "
            f"cipher {side.cipher}, server CPU {server}, "
            f"client CPU {median(side.client_cpu):.2f} s")


def _skipped(reason: str, size: int) -> list[Figure]:
    target, _ = check(None, ">=", TARGET_RATIO, subject="ratio")
    return [Figure(NAME, f"upload MB/s ({size // 10**6} MB, OpenSSH sftp)", None, "MB/s",
                   "OpenSSH sshd internal-sftp MB/s", None, target=target, notes=reason)]


def _measure(ctx: Context, size: int, rounds: int, sshd_ok: bool) -> tuple[Side | None, Side]:
    created_privsep = False
    servers: list[Proc] = []
    tmp = Path(tempfile.mkdtemp(prefix="banksim-bench-sftp-"))
    try:
        key = tmp / "client_ed25519"
        _keygen(key)
        client_pub = (tmp / "client_ed25519.pub").read_text().strip()
        data = tmp / "upload.bin"
        _random_file(data, size)
        dest = tmp / "sshd-uploads"
        dest.mkdir()

        bank = Side("banksim", _start_banksim(tmp, client_pub, 2 * size + (64 << 20)),
                    SFTP_USER, "/upload/batches")
        servers.append(bank.server)
        sides = [bank]
        base: Side | None = None
        if sshd_ok:
            if os.geteuid() == 0 and not PRIVSEP_DIR.exists():
                PRIVSEP_DIR.mkdir(mode=0o755)
                created_privsep = True
                ctx.log(f"created {PRIVSEP_DIR} for sshd's privilege separation (removed after)")
            base = Side("sshd", _start_sshd(tmp, client_pub), getpass.getuser(), str(dest))
            servers.append(base.server)
            sides.insert(0, base)
        for side in sides:
            _probe(ctx, side, key, tmp)
        tag = f"{os.getpid()}-{int(time.time())}"
        for round_no in range(rounds):
            order = sides if round_no % 2 == 0 else sides[::-1]
            for side in order:
                _upload(ctx, side, key, data, size, tmp, f"bench-sftp-{tag}-{round_no}.bin")
        return base, bank
    finally:
        for server in servers:
            server.stop(signal.SIGTERM if server.label == "sshd" else signal.SIGINT)
        if created_privsep:
            with contextlib.suppress(OSError):
                PRIVSEP_DIR.rmdir()
        shutil.rmtree(tmp, ignore_errors=True)


def run(ctx: Context) -> list[Figure]:
    if not ctx.selects(NAME, "upload"):
        return []
    size = (50 if ctx.quick else 200) * 10**6
    rounds = QUICK_ROUNDS if ctx.quick else ROUNDS
    missing = [tool for tool in ("sftp", "ssh-keygen") if shutil.which(tool) is None]
    if missing:
        return _skipped(f"{', '.join(missing)} not found: install openssh-client", size)
    unavailable = banksim_unavailable()
    if unavailable:
        ctx.log(f"banksim serve unavailable: {unavailable}")
        return _skipped(unavailable, size)
    sshd_ok = SSHD.exists()
    if not sshd_ok:
        ctx.log(f"{SSHD} not found: {SSHD_MISSING}")
    try:
        load = os.getloadavg()[0]
        base, bank = _measure(ctx, size, rounds, sshd_ok)
    except (BenchError, subprocess.SubprocessError, OSError) as exc:
        ctx.log(f"sftp benchmark failed: {exc}")
        return _skipped(f"could not measure: {str(exc).splitlines()[0]}", size)

    rate = bank.rate(size)
    notes = _side_notes(bank, size)
    if base is None:
        return _skipped(f"{SSHD} not found: {SSHD_MISSING}; banksim alone {rate:.0f} MB/s "
                        f"({notes})", size)
    base_rate = base.rate(size)
    target, passed = check(rate / base_rate, ">=", TARGET_RATIO, subject="ratio")
    run_notes = (f"{size:,} random bytes, median of {rounds} puts each, alternating; every "
                 f"size checked; load average {load:.2f} at start; {notes}; "
                 f"{_side_notes(base, size)}")
    cpu_bank = median(bank.server_cpu) * 1e6 / size if bank.server_cpu else None
    cpu_base = median(base.server_cpu) * 1e6 / size if base.server_cpu else None
    return [
        Figure(NAME, f"upload MB/s ({size // 10**6} MB, OpenSSH sftp)", rate, "MB/s",
               "OpenSSH sshd internal-sftp MB/s", base_rate, target=target, passed=passed,
               notes=run_notes),
        Figure(NAME, "server CPU per MB uploaded", None if cpu_bank is None else cpu_bank * 1e3,
               "ms/MB", "sshd ms/MB", None if cpu_base is None else cpu_base * 1e3,
               notes="server process CPU (sshd: with its per-connection children) ÷ MB"),
    ]
