"""`banksim`: start the simulator, or talk to a running one.

    banksim serve [--profile FILE] [--state-dir DIR | --ephemeral] [--http-port N]
                  [--sftp-port N] [--clock MODE] [--host H] [--admin-token T]
    banksim clock show | advance DURATION | advance --to TIME | next-day [--at HH:MM] | mode M
    banksim accounts [--kind CLASS_III]
    banksim invariants
    banksim events [--kind K] [--account A] [--serial S] [--batch N] [--order O] [--since ID] [--limit N]
    banksim profile show | default
    banksim wechat credentials [--profile FILE] [--state-dir DIR] [--json | --export DIR]

Client commands find the server with --url or $BANKSIM_URL (default
http://127.0.0.1:8600) and send $BANKSIM_ADMIN_TOKEN when set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator.app import DEFAULT_HTTP_PORT, DEFAULT_SFTP_PORT, ServeOptions, StartupError, run
from simulator.clock import from_us
from simulator.config import ProfileError, default_profile_text

if TYPE_CHECKING:
    import httpx


def _sftp_port(args: argparse.Namespace) -> int:
    # Who asks for a free HTTP port (tests, parallel runs) wants a free SFTP port too.
    if args.sftp_port is not None:
        return int(args.sftp_port)
    return 0 if args.http_port == 0 else DEFAULT_SFTP_PORT


def _serve(args: argparse.Namespace) -> int:
    options = ServeOptions(
        host=args.host, http_port=args.http_port, sftp_port=_sftp_port(args), profile_path=args.profile,
        state_dir=args.state_dir, ephemeral=args.ephemeral, clock_mode=args.clock,
        admin_token=args.admin_token or os.environ.get("BANKSIM_ADMIN_TOKEN"),
        port_file=args.port_file)
    try:
        run(options)
    except (StartupError, ProfileError) as exc:
        print(f"banksim: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an unreadable --profile file, a port already taken, ...
        where = f" {exc.filename}" if exc.filename else ""
        print(f"banksim: cannot start:{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


class Control:
    def __init__(self, url: str, token: str | None) -> None:
        # Imported here, not at the top: `banksim serve` does not need it at start-up.
        import httpx

        self._errors: tuple[type[Exception], ...] = (httpx.HTTPError,)
        headers = {"X-Admin-Token": token} if token else {}
        self.client: httpx.Client = httpx.Client(base_url=url.rstrip("/") + "/_admin", headers=headers,
                                   timeout=60)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._request(method, path, body, None)[0]

    def call_with_header(self, method: str, path: str, params: dict[str, Any],
                         header: str) -> tuple[Any, int]:
        """The answer and an integer header of it (0 when absent)."""
        data, response = self._request(method, path, None, params)
        return data, int(response.headers.get(header, "0") or 0)

    def _request(self, method: str, path: str, body: dict[str, Any] | None,
                 params: dict[str, Any] | None) -> tuple[Any, httpx.Response]:
        try:
            response = self.client.request(method, path, json=body, params=params)
            data = response.json()
        except self._errors as exc:
            raise SystemExit(f"banksim: cannot reach the server: {exc}") from None
        except ValueError:
            raise SystemExit(f"banksim: {self.client.base_url} did not answer as banksim "
                             f"(HTTP {response.status_code}, not JSON)") from None
        if response.status_code >= 400:
            raise SystemExit(f"banksim: {data.get('code')} {data.get('message')}: "
                             f"{data.get('detail', '')}")
        return data, response


def _print(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def _clock(args: argparse.Namespace, control: Control) -> int:
    if args.action == "show":
        _print(control.call("GET", "/clock"))
    elif args.action == "advance":
        if (args.value is None) == (args.to is None):
            raise SystemExit("banksim: give a duration (e.g. 20m, 1d) or --to TIME")
        body = {"by": args.value} if args.value else {"to": args.to}
        _print(control.call("POST", "/clock/advance", body))
    elif args.action == "next-day":
        _print(control.call("POST", "/clock/next-business-day", {"at": args.at}))
    elif args.action == "mode":
        if not args.value:
            raise SystemExit("banksim: give a mode: manual, realtime or accelerated:N")
        _print(control.call("PUT", "/clock/mode", {"mode": args.value}))
    return 0


def _accounts(args: argparse.Namespace, control: Control) -> int:
    rows = control.call("GET", f"/accounts?limit={args.limit}" + (f"&kind={args.kind}" if args.kind else ""))
    print(f"{'account':<20} {'class':<11} {'status':<15} {'frozen':<6} {'balance':>12}  name")
    for a in rows:
        print(f"{a['account_no']:<20} {a['account_class']:<11} {a['status']:<15} "
              f"{'yes' if a['frozen'] else 'no':<6} {a['balance']:>12}  {a['name']}")
    return 0


def _invariants(args: argparse.Namespace, control: Control) -> int:
    result = control.call("GET", "/invariants")
    if result["ok"]:
        print("ledger invariants hold")
        return 0
    for v in result["violations"]:
        print(f"VIOLATION {v['rule']}: {v['subject']}: {v['detail']}")
    return 1


def _events(args: argparse.Namespace, control: Control) -> int:
    # The newest events unless --since asks to read forward from an id; either way a line on
    # stderr says how many matching events were left out, so nothing is cut silently.
    params: dict[str, Any] = {"since_id": args.since or 0, "limit": args.limit,
                              "newest": "false" if args.since else "true"}
    for key in ("kind", "account", "serial", "batch", "order"):
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    events, more = control.call_with_header("GET", "/events", params, "X-Events-More")
    if more and not args.since:
        print(f"banksim: {more} older event(s) not shown (--limit N shows more; --since ID reads "
              "forward from an id)", file=sys.stderr)
    for e in events:
        at = from_us(e["at_us"]).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{e['id']:>6} {at} {e['kind']:<20} {e['app_id'] or '-':<16} "
              f"{e['ref'] or '-':<22} {json.dumps(e['detail'], ensure_ascii=False)}")
    if more and args.since:
        last = events[-1]["id"] if events else args.since
        print(f"banksim: {more} later event(s) not shown (--since {last} for the next page)",
              file=sys.stderr)
    return 0


def _profile(args: argparse.Namespace, control: Control | None) -> int:
    if args.action == "default":
        print(default_profile_text(), end="")
    else:
        assert control is not None
        _print(control.call("GET", "/profile"))
    return 0


# -- banksim wechat ------------------------------------------------------------------------------


def _wechat(args: argparse.Namespace) -> int:
    """What a WeChat Pay SDK needs (docs/wechat.md); reads the profile and state dir, no server."""
    from simulator.config import load_profile
    from simulator.wechat.credentials import credentials, export, render

    try:
        creds = credentials(load_profile(args.profile), args.state_dir)
    except ProfileError as exc:
        print(f"banksim: {exc}", file=sys.stderr)
        return 2
    if args.export:
        for path in export(creds, args.export):
            print(path)
    elif args.json:
        print(json.dumps(creds, indent=2, ensure_ascii=False))
    else:
        print(render(creds))
    return 0


def _add_wechat(sub: Any) -> None:
    w = sub.add_parser("wechat", help="WeChat Pay channel: credentials for an SDK")
    w.add_argument("action", choices=["credentials"])
    w.add_argument("--profile", type=Path, help="profile YAML (default: the packaged one)")
    w.add_argument("--state-dir", type=Path, default=Path(".banksim"),
                   help="the server's state dir (keys of wechat.keys.source=state_dir live there)")
    w.add_argument("--json", action="store_true", help="print JSON (PEM included)")
    w.add_argument("--export", type=Path, metavar="DIR",
                   help="write <DIR>/<mchid>/*.pem and credentials.json")
    w.set_defaults(handler=_wechat)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="banksim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="start the simulated bank")
    s.add_argument("--profile", type=Path, help="profile YAML (default: the packaged one)")
    s.add_argument("--state-dir", type=Path, help="where state lives (default ./.banksim)")
    s.add_argument("--ephemeral", action="store_true", help="state in a temp dir, deleted at exit")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT, help="0 picks a free port")
    s.add_argument("--sftp-port", type=int, default=None,
                   help=f"0 picks a free port, -1 disables SFTP (default {DEFAULT_SFTP_PORT}, "
                        "or a free port when --http-port is 0)")
    s.add_argument("--clock", help="manual | realtime | accelerated:N (overrides the profile)")
    s.add_argument("--admin-token", help="require X-Admin-Token on /_admin (needed off loopback)")
    s.add_argument("--port-file", type=Path, help="write the bound ports as JSON here when ready")
    s.set_defaults(handler=_serve)

    def client(name: str, help_text: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_text)
        c.add_argument("--url", default=os.environ.get("BANKSIM_URL",
                                                       f"http://127.0.0.1:{DEFAULT_HTTP_PORT}"))
        return c

    c = client("clock", "show or move the virtual clock")
    c.add_argument("action", choices=["show", "advance", "next-day", "mode"])
    c.add_argument("value", nargs="?", help="duration for advance (20m, 1h30m, 1d); mode for mode")
    c.add_argument("--to", help="advance to this ISO time (CST when no offset)")
    c.add_argument("--at", help="next-day: HH:MM on the next business day")
    c.set_defaults(client_handler=_clock)

    c = client("accounts", "list accounts")
    c.add_argument("--kind", choices=["CLASS_III", "SUPERVISION", "SETTLEMENT", "INTERNAL"])
    c.add_argument("--limit", type=int, default=500)
    c.set_defaults(client_handler=_accounts)

    c = client("invariants", "check the ledger invariants (exit 1 on a violation)")
    c.set_defaults(client_handler=_invariants)

    c = client("events", "print the event timeline (the newest --limit events, oldest first)")
    c.add_argument("--kind", help="exact kind, or a prefix ending in '.' (account.)")
    c.add_argument("--account", help="events of this account number")
    c.add_argument("--serial", help="events of this request or record serial")
    c.add_argument("--batch", type=int, help="events of this batch number and its files")
    c.add_argument("--order", help="events of this WeChat order (out_trade_no)")
    c.add_argument("--since", type=int, default=0,
                   help="read forward from the event after this id instead of the newest")
    c.add_argument("--limit", type=int, default=200)
    c.set_defaults(client_handler=_events)

    c = client("profile", "show the running profile, or print the packaged default")
    c.add_argument("action", choices=["show", "default"])
    c.set_defaults(client_handler=_profile)

    _add_wechat(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        return quiet_broken_pipe()


def quiet_broken_pipe() -> int:
    """The reader of our output went away (``banksim events | head``): stop quietly.

    The standard recipe: later writes (and the flush at exit) go to /dev/null instead of
    raising again, and the exit status is 141 (128 + SIGPIPE), what a shell reports for a
    tool stopped by a closed pipe (as the README says, after its curl examples).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


def _main(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    if hasattr(args, "handler"):
        return int(args.handler(args))
    if args.command == "profile" and args.action == "default":
        return _profile(args, None)
    control = Control(args.url, os.environ.get("BANKSIM_ADMIN_TOKEN"))
    return int(args.client_handler(args, control))


if __name__ == "__main__":
    sys.exit(main())
