"""``platform-client``: the platform's T+1 steps from the command line.

Every command takes ``--config FILE`` (YAML or TOML, see ``docs/platform-client.md``) and
``--store PATH``, plus overrides for the endpoints. Amounts are yuan with two decimals.
Exit status: 0 done, 1 a step failed (message on stderr, nothing half-applied), 2 usage.

Example::

    platform-client --config platform.yaml reconcile --date 2026-01-05
    platform-client approve --date 2026-01-05 --by ops.li
    platform-client disburse --date 2026-01-05
    platform-client poll-returns
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

from contracts.money import AmountFormatError, parse_yuan
from platform_client import checks, onboarding, payouts, reconciliation, report, spending, topups
from platform_client.config import load_config
from platform_client.context import Context
from platform_client.errors import ConfigError, PlatformError
from platform_client.notify import NotifyServer


def _yuan(text: str) -> int:
    try:
        return parse_yuan(text)
    except AmountFormatError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _print(value: Any) -> None:
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    print(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def _register(ctx: Context, a: argparse.Namespace) -> Any:
    onboarding.register_user(ctx, a.user, {"name": a.name, "id_number": a.id_number, "mobile": a.mobile,
                                           "bound_card_number": a.card, "bound_card_kind": a.card_kind})
    return {"user_id": a.user}


def _open(ctx: Context, a: argparse.Namespace) -> Any:
    account_no = onboarding.open_account(ctx, a.user, a.serial)
    if a.images:
        onboarding.upload_images(ctx, a.user)
    return {"user_id": a.user, "account_no": account_no, "images_uploaded": bool(a.images)}


def _read_file(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def _upload_images(ctx: Context, a: argparse.Namespace) -> Any:
    onboarding.upload_images(ctx, a.user, _read_file(a.front), _read_file(a.back))
    return {"uploaded": a.user}


def _notify_serve(ctx: Context, a: argparse.Namespace) -> Any:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with NotifyServer(ctx) as server:
        print(f"notify endpoint {server.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait(a.seconds)
    return {"stopped": True}


def _poll(ctx: Context, a: argparse.Namespace) -> Any:
    if a.if_due and not payouts.poll_due(ctx):
        return {"polled": False, "reason": f"polled less than {ctx.config.return_poll_interval} ago"}
    return payouts.poll_returns(ctx)


COMMANDS: dict[str, Callable[[Context, argparse.Namespace], Any]] = {
    "init": lambda ctx, a: {"store": ctx.config.store_path, "schema_version": ctx.store.schema_version},
    "register": _register,
    "open-account": _open,
    "upload-images": _upload_images,
    "account": lambda ctx, a: onboarding.refresh_account(ctx, a.user),
    "topup": lambda ctx, a: {"code_url": topups.create_order(ctx, a.user, a.order, a.amount)},
    "notify-serve": _notify_serve,
    "reconcile": lambda ctx, a: reconciliation.reconcile(ctx, a.date),
    "approve": lambda ctx, a: reconciliation.approve(ctx, a.date, a.by),
    "disburse": lambda ctx, a: {"batch_no": payouts.disburse(ctx, a.date)},
    "upload": lambda ctx, a: {"sent": payouts.upload_pending(ctx)},
    "poll-returns": _poll,
    "resubmit": lambda ctx, a: payouts.resubmit(ctx, a.kind, a.serial),
    "consume": lambda ctx, a: {"recorded": spending.consume(ctx, a.user, a.id, a.amount, a.memo)},
    "withhold": lambda ctx, a: {"batch_no": payouts.withhold(ctx, a.date)},
    "refund": lambda ctx, a: spending.refund(ctx, a.user, a.serial, a.amount, a.memo),
    "check-balances": lambda ctx, a: checks.check_balances(ctx, with_bank=not a.no_bank),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="platform-client", description="The platform's side of the T+1 flow.")
    p.add_argument("--config", help="YAML or TOML settings file")
    p.add_argument("--store", dest="store_path", help="the platform's SQLite store")
    p.add_argument("--bank-url")
    p.add_argument("--wechat-url")
    p.add_argument("--sftp-host")
    p.add_argument("--sftp-port", type=int)
    p.add_argument("--notify-port", type=int)
    p.add_argument("--clock", choices=["system", "bank"], help="system time, or the bank's virtual clock")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create or migrate the store")
    r = sub.add_parser("register", help="register a user with the five elements")
    for flag in ("--user", "--name", "--id-number", "--mobile", "--card"):
        r.add_argument(flag, required=True)
    r.add_argument("--card-kind", default="DEBIT_I", choices=["DEBIT_I", "CREDIT"])
    o = sub.add_parser("open-account", help="open (or recover) the user's Class III account")
    o.add_argument("--user", required=True)
    o.add_argument("--serial", help="request serial (default OPEN-<user>)")
    o.add_argument("--images", action="store_true", help="also upload the ID-card images")
    ui = sub.add_parser("upload-images", help="upload the user's ID-card images")
    ui.add_argument("--user", required=True)
    ui.add_argument("--front", help="image file of the portrait side (default: a generated PNG)")
    ui.add_argument("--back", help="image file of the national emblem side (default: a generated PNG)")
    sub.add_parser("account", help="query the user's account (image review, balance)").add_argument(
        "--user", required=True)
    t = sub.add_parser("topup", help="create a WeChat top-up order")
    t.add_argument("--user", required=True)
    t.add_argument("--order", required=True, help="out_trade_no")
    t.add_argument("--amount", required=True, type=_yuan)
    n = sub.add_parser("notify-serve", help="serve the payment-notification endpoint")
    n.add_argument("--seconds", type=float, default=None,
                   help="stop after this long (default: until signalled)")
    for name, helptext in (("reconcile", "reconcile a bill date"),
                           ("disburse", "build and send the DF batch"),
                           ("withhold", "build and send the DK batch of a consumption day")):
        sub.add_parser(name, help=helptext).add_argument("--date", required=True)
    ap = sub.add_parser("approve", help="approve a reconciled date")
    ap.add_argument("--date", required=True)
    ap.add_argument("--by", required=True)
    sub.add_parser("upload", help="upload batches not yet sent")
    pr = sub.add_parser("poll-returns", help="fetch and apply return and rejection files")
    pr.add_argument("--if-due", action="store_true", help="only if the poll interval has passed")
    rs = sub.add_parser("resubmit", help="send fixed failures again in a new batch")
    rs.add_argument("--kind", choices=["DF", "DK"])
    rs.add_argument("--serial", action="append", help="only these failed records (repeatable)")
    c = sub.add_parser("consume", help="record a consumption")
    c.add_argument("--user", required=True)
    c.add_argument("--id", required=True)
    c.add_argument("--amount", required=True, type=_yuan)
    c.add_argument("--memo", default="")
    rf = sub.add_parser("refund", help="refund from the user's account to the bound card")
    rf.add_argument("--user", required=True)
    rf.add_argument("--serial", required=True)
    rf.add_argument("--amount", required=True, type=_yuan)
    rf.add_argument("--memo", default="")
    cb = sub.add_parser("check-balances", help="journal and bank balance checks")
    cb.add_argument("--no-bank", action="store_true")
    rp = sub.add_parser("report", help="the readable report of a day")
    rp.add_argument("--date", required=True)
    rp.add_argument("--with-bank", action="store_true")
    # The demo starts its own simulator and store; its options are its own (see platform_client.demo).
    sub.add_parser("demo", help="run the end-to-end demo: a simulated bank, users and T+1 days",
                   add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away (`platform-client report ... | head`): later writes and the
        # flush at exit go to /dev/null, and the status is 141 (128 + SIGPIPE) as a shell
        # reports for a tool stopped by a closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        from platform_client import demo

        return demo.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config, store_path=args.store_path, bank_url=args.bank_url,
                             wechat_url=args.wechat_url, sftp_host=args.sftp_host, sftp_port=args.sftp_port,
                             notify_port=args.notify_port, clock=args.clock)
        ctx = Context.create(config)
        try:
            if args.command == "report":
                print(report.render_report(ctx, args.date, with_bank=args.with_bank), end="")
            else:
                _print(COMMANDS[args.command](ctx, args))
        finally:
            ctx.close()
    except PlatformError as exc:
        print(f"platform-client: {exc.code}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
