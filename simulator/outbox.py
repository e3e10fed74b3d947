"""Where the bank's files live: each platform's SFTP tree under the state directory.

    <root>/<app_id>/upload/images/       ID-card images from the platform
    <root>/<app_id>/upload/batches/      batch files from the platform
    <root>/<app_id>/download/returns/    return and rejection files from the bank
    <root>/<app_id>/download/statements/ daily statements from the bank

The bank writes its own files under a temporary name and renames them when complete,
the same rule it holds platforms to, so a platform polling the directory never reads a
half-written file. Writing the same name again replaces the file with the same bytes
(jobs that write files may run again after a crash; the files are deterministic).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

AREAS = ("upload/images", "upload/batches", "download/returns", "download/statements")


class Outbox:
    def __init__(self, root: Path) -> None:
        self.root = root

    def jail(self, app_id: str) -> Path:
        """The platform's tree, created with its layout on first use."""
        base = self.root / app_id
        for area in AREAS:
            (base / area).mkdir(parents=True, exist_ok=True)
        return base

    @contextmanager
    def write(self, app_id: str, area: str, name: str) -> Iterator[BinaryIO]:
        """A binary file to fill; it appears under ``name`` only once the block ends."""
        if area not in AREAS or "/" in name or name.startswith("."):
            raise ValueError(f"bad outbox target {area}/{name}")
        directory = self.jail(app_id) / area
        temp = directory / f".{name}.part"
        with open(temp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, directory / name)

    def exists(self, app_id: str, area: str, name: str) -> bool:
        return (self.jail(app_id) / area / name).is_file()

    def remove_partials(self) -> int:
        """Delete the bank's own unfinished files (left by a crash); returns how many."""
        removed = 0
        for area in ("download/returns", "download/statements"):
            for partial in self.root.glob(f"*/{area}/.*.part"):
                partial.unlink(missing_ok=True)
                removed += 1
        return removed

    def write_bytes(self, app_id: str, area: str, name: str, data: bytes) -> None:
        with self.write(app_id, area, name) as fh:
            fh.write(data)

    def listing(self, app_id: str) -> dict[str, list[dict[str, object]]]:
        """Every file in the platform's tree by area: name and size."""
        base = self.jail(app_id)
        return {
            area: [{"name": p.name, "size": p.stat().st_size}
                   for p in sorted((base / area).iterdir()) if p.is_file() and not p.name.startswith(".")]
            for area in AREAS
        }
