"""ID-card images: intake over SFTP and the review that activates an account.

Naming convention (upload/images/): ``<account_no>_front.jpg`` and ``<account_no>_back.jpg``
(``.jpeg`` and ``.png`` too); a later attempt adds its number, ``<account_no>_front_2.jpg``,
because the bank never overwrites an accepted file (docs/sftp.md) and a rejected image
must be sent again. An image is checked on arrival: the name, the account (it
must be the platform's own), the size limit and the file's real signature (JPEG
``FF D8 FF``, PNG ``89 50 4E 47 0D 0A 1A 0A``), not its extension. Review is a job on the
virtual clock, ``images.review_delay`` after the first image of an account arrives: with
both sides present and readable (at least ``images.min_bytes``) it approves the images
and moves the account PENDING_IMAGES -> ACTIVE; otherwise it rejects them with a reason
the platform reads on the account (``image_status``, ``image_reason``). A new upload after
a rejection is reviewed again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from simulator.errors import FileBadField, FileTooLarge, NoSuchAccount
from simulator.events import record_event
from simulator.store import Store

NAME = re.compile(r"^(?P<account>[0-9]{10,32})_(?P<side>front|back)(?:_(?P<attempt>[2-9]|[1-9][0-9]{1,2}))?"
                  r"\.(?P<ext>jpe?g|png)$", re.IGNORECASE)
_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}


@dataclass(frozen=True)
class ImageReceived:
    account_no: str
    side: str
    format: str
    first_for_review: bool


def sniff(head: bytes) -> str | None:
    """The real image format from the first bytes, or None."""
    return next((fmt for sig, fmt in _SIGNATURES.items() if head.startswith(sig)), None)


def receive_image(store: Store, *, app_id: str, file_name: str, path: Path, max_bytes: int,
                  now_us: int) -> ImageReceived:
    """Record an arrived image, or raise a coded error naming what is wrong with it."""
    m = NAME.match(file_name)
    if m is None:
        raise FileBadField(f"{file_name!r} is not <account_no>_front|back[_<attempt>].jpg|png")
    account_no, side = m["account"], m["side"].lower()
    row = store.one("SELECT app_id, status, image_status FROM accounts WHERE account_no = ?",
                    (account_no,))
    if row is None or row["app_id"] != app_id:
        raise NoSuchAccount(f"no account {account_no} for this platform")
    size = path.stat().st_size
    if size > max_bytes:
        raise FileTooLarge(f"{file_name} has {size} bytes, images may have {max_bytes}")
    with open(path, "rb") as fh:
        fmt = sniff(fh.read(8))
    if fmt is None:
        raise FileBadField(f"{file_name} is neither a JPEG nor a PNG image")
    store.execute(
        "INSERT INTO images(account_no, side, app_id, file_name, size, format, received_us) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(account_no, side) DO UPDATE SET "
        "file_name = excluded.file_name, size = excluded.size, format = excluded.format, "
        "received_us = excluded.received_us",
        (account_no, side, app_id, file_name, size, fmt, now_us))
    first = row["image_status"] in ("NONE", "REJECTED")
    if first:
        store.execute("UPDATE accounts SET image_status = 'IN_REVIEW', image_reason = NULL "
                      "WHERE account_no = ?", (account_no,))
    record_event(store, now_us, "image.received", app_id=app_id, ref=account_no,
                 detail={"side": side, "format": fmt, "size": size})
    return ImageReceived(account_no, side, fmt, first)


def review(store: Store, *, account_no: str, min_bytes: int, now_us: int) -> str:
    """Approve or reject the account's images; returns the new image status."""
    row = store.one("SELECT app_id, status, image_status FROM accounts WHERE account_no = ?",
                    (account_no,))
    if row is None or row["image_status"] != "IN_REVIEW":
        return "SKIPPED" if row is None else str(row["image_status"])
    sides = {r["side"]: r for r in store.all(
        "SELECT side, size FROM images WHERE account_no = ?", (account_no,))}
    reason = None
    for side, label in (("front", "front (portrait side)"), ("back", "back (national emblem side)")):
        if side not in sides:
            reason = f"{label} image missing"
            break
        if sides[side]["size"] < min_bytes:
            reason = f"{label} image unreadable"
            break
    status = "REJECTED" if reason else "APPROVED"
    store.execute("UPDATE accounts SET image_status = ?, image_reason = ? WHERE account_no = ?",
                  (status, reason, account_no))
    if status == "APPROVED" and row["status"] == "PENDING_IMAGES":
        store.execute("UPDATE accounts SET status = 'ACTIVE' WHERE account_no = ?", (account_no,))
    record_event(store, now_us, f"image.{status.lower()}", app_id=row["app_id"], ref=account_no,
                 detail={"reason": reason} if reason else {})
    return status


