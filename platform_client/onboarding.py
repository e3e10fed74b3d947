"""Users and their Class III accounts: registration, opening, ID-card images, review.

Opening is one signed call with the user's request serial (``OPEN-<user_id>`` unless given),
recorded before the call: a crash or a lost answer is recovered by calling again with the
same serial (:class:`~platform_client.bank_api.BankApi` queries by serial), so a user never
gets two accounts. Images go to ``/upload/images/<account_no>_front.png`` / ``_back.png``;
the bank reviews them later on its clock, and :func:`refresh_account` reads the outcome.

Example::

    register_user(ctx, "u1", {"name": "张三", "id_number": "...", "mobile": "13800138000",
                              "bound_card_number": "6222020000000000422", "bound_card_kind": "DEBIT_I"})
    open_account(ctx, "u1")             # the account number
    upload_images(ctx, "u1")
    refresh_account(ctx, "u1")["image_status"]   # IN_REVIEW, later APPROVED
"""

from __future__ import annotations

from typing import Any

from platform_client.context import Context
from platform_client.errors import BankApiError, StepRefused
from platform_client.images import id_card_png
from platform_client.sftp import IMAGES_DIR

ELEMENTS = ("name", "id_number", "mobile", "bound_card_number", "bound_card_kind")


def register_user(ctx: Context, user_id: str, identity: dict[str, str]) -> None:
    """Record a user with the five elements (idempotent for the same elements)."""
    missing = [e for e in ELEMENTS if not identity.get(e)]
    if missing:
        raise StepRefused(f"user {user_id}: missing {', '.join(missing)}")
    with ctx.store.transaction():
        row = ctx.store.one("SELECT * FROM users WHERE user_id = ?", (user_id,))
        if row is not None:
            if any(row[e] != identity[e] for e in ELEMENTS):
                raise StepRefused(f"user {user_id} exists with other identity elements")
            return
        ctx.store.execute(
            "INSERT INTO users(user_id, name, id_number, mobile, bound_card_number, bound_card_kind, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (user_id, *(identity[e] for e in ELEMENTS), ctx.now_iso()))
        ctx.store.execute("INSERT INTO wallets(user_id) VALUES (?)", (user_id,))


def _user(ctx: Context, user_id: str) -> Any:
    row = ctx.store.one("SELECT * FROM users WHERE user_id = ?", (user_id,))
    if row is None:
        raise StepRefused(f"no user {user_id}")
    return row


def open_account(ctx: Context, user_id: str, serial: str | None = None) -> str:
    """Open (or recover) the user's Class III account; its number."""
    user = _user(ctx, user_id)
    if user["account_no"]:
        return str(user["account_no"])
    with ctx.store.transaction():
        # The serial is fixed before the call so that every retry, even after a crash, reuses it.
        serial = user["open_serial"] or serial or f"OPEN-{user_id}"
        ctx.store.execute("UPDATE users SET open_serial = ? WHERE user_id = ?", (serial, user_id))
    identity = {e: str(user[e]) for e in ELEMENTS}
    try:
        account = ctx.bank.open_account(serial, identity)
    except BankApiError as exc:
        with ctx.store.transaction():
            ctx.store.execute("UPDATE users SET open_code = ?, open_message = ? WHERE user_id = ?",
                              (exc.bank_code, str(exc), user_id))
        raise
    with ctx.store.transaction():
        ctx.store.execute(
            "UPDATE users SET account_no = ?, account_status = ?, image_status = ?, image_reason = ?, "
            "open_code = '0000', open_message = NULL WHERE user_id = ?",
            (account["account_no"], account["status"], account["image_status"],
             account.get("image_reason"), user_id))
    return str(account["account_no"])


def upload_images(ctx: Context, user_id: str, front: bytes | None = None, back: bytes | None = None) -> None:
    """Send both sides of the ID card (default: generated PNGs) under their final names.

    The bank never overwrites an accepted file, so images sent again (after a rejection)
    go under the next attempt number: ``<account_no>_front_2.png``. An attempt whose files
    already hold these very bytes (an upload that completed before a crash) is reused.
    """
    user = _user(ctx, user_id)
    if not user["account_no"]:
        raise StepRefused(f"user {user_id} has no account yet: open it first")
    account_no = str(user["account_no"])
    front = front if front is not None else id_card_png(f"{user['id_number']}-front")
    back = back if back is not None else id_card_png(f"{user['id_number']}-back")
    with ctx.sftp() as sftp:
        present = set(sftp.listdir(IMAGES_DIR))
        for attempt in range(1, MAX_IMAGE_ATTEMPTS + 1):
            names = [image_name(account_no, side, attempt) for side in ("front", "back")]
            held = [(name, data) for name, data in zip(names, (front, back), strict=True) if name in present]
            if all(sftp.read(f"{IMAGES_DIR}/{name}") == data for name, data in held):
                break
        else:
            raise StepRefused(f"user {user_id}: {MAX_IMAGE_ATTEMPTS} image attempts used up")
        for side, name, data in zip(("front", "back"), names, (front, back), strict=True):
            sftp.upload(IMAGES_DIR, name, data)
            _check_image_taken(ctx, user_id, account_no, side, name)


def _check_image_taken(ctx: Context, user_id: str, account_no: str, side: str, name: str) -> None:
    """Raise with the bank's own reason when it refused the image just sent.

    The bank checks an image when it arrives (name, size, real JPEG/PNG signature) and, when
    it refuses it, marks the account's images REJECTED with its reason; an accepted image
    leaves them IN_REVIEW (or APPROVED). SFTP itself cannot say so, hence the account query
    after each side: without it the refusal is overwritten when the other side arrives and
    the review can only say "image missing".
    """
    account = ctx.bank.query_account(account_no)
    if account["image_status"] != "REJECTED":
        return
    reason = account.get("image_reason") or "no reason given"
    with ctx.store.transaction():
        ctx.store.execute("UPDATE users SET account_status = ?, image_status = ?, image_reason = ? "
                          "WHERE user_id = ?", (account["status"], "REJECTED", reason, user_id))
    raise StepRefused(f"user {user_id}: the bank refused the {side} image {name}: {reason}")


MAX_IMAGE_ATTEMPTS = 99


def image_name(account_no: str, side: str, attempt: int) -> str:
    """``<account_no>_<side>.png`` for the first attempt, ``_<side>_<n>.png`` after it."""
    return f"{account_no}_{side}.png" if attempt == 1 else f"{account_no}_{side}_{attempt}.png"


def refresh_account(ctx: Context, user_id: str) -> dict[str, Any]:
    """Query the bank for the account (status, image review, balance) and record it."""
    user = _user(ctx, user_id)
    if not user["account_no"]:
        raise StepRefused(f"user {user_id} has no account yet")
    account = ctx.bank.query_account(str(user["account_no"]))
    with ctx.store.transaction():
        ctx.store.execute("UPDATE users SET account_status = ?, image_status = ?, image_reason = ? "
                          "WHERE user_id = ?", (account["status"], account["image_status"],
                                                account.get("image_reason"), user_id))
    return account
