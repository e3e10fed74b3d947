"""Where the server's memory is: the whole process, SQLite's own heap, Python's objects.

A growing RSS is not by itself a leak: the store's page cache (``PRAGMA cache_size``)
fills as the database grows, up to its cap, and that memory is SQLite's. This view puts
the figures side by side so a load run can tell bounded caches from a leak:

* ``rss_mb``: the process's resident set (``VmRSS`` in ``/proc/self/status``; null where
  there is no ``/proc``).
* ``sqlite_heap_mb``: ``sqlite3_memory_used()`` of the SQLite library this process really
  runs: the one the ``_sqlite3`` module is linked against, found among the libraries
  already mapped into the process and opened with ``RTLD_NOLOAD`` (so it can never be a
  second copy with its own, empty counters). Page caches, prepared statements and schema
  of every connection in the process (the checkpointer's too). Null, with
  ``sqlite_heap_note`` saying why, when that library or its counters cannot be reached.
* ``python_blocks``: ``sys.getallocatedblocks()``, the number of memory blocks Python's
  allocator holds: a count, not bytes (Python keeps no cheap byte total), but it rises
  with a leak of Python objects or buffers and costs nothing to read.
* ``gc_objects``: the objects the garbage collector tracks: ``len(gc.get_objects())``
  plus those frozen at start-up (``gc.get_freeze_count()``; ``get_objects`` leaves them
  out). It includes cyclic garbage not yet collected: with ``banksim serve``'s gen-0
  threshold of 50,000 it saw-tooths by up to that much, so only a trend well beyond it
  means anything. Listing the objects is O(n) (a few milliseconds for a busy server): fine
  for an on-demand control call, not for a hot path.
* ``sqlite_cache_cap_mb``: the store connection's page-cache cap, read back from the
  connection (``PRAGMA cache_size``, KiB when negative, pages when positive).

Example::

    >>> import sqlite3
    >>> view = memory_view(sqlite3.connect(":memory:"))
    >>> view.gc_objects > 0
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True)
class MemoryView:
    """One reading of the process's memory; see the module docstring for each field."""

    rss_mb: float | None
    sqlite_heap_mb: float | None
    sqlite_heap_peak_mb: float | None
    sqlite_heap_note: str | None
    python_blocks: int
    gc_objects: int
    sqlite_cache_cap_mb: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def memory_view(conn: sqlite3.Connection | None = None) -> MemoryView:
    """Read every figure now; ``conn`` is the connection whose cache cap is reported.

    Example: ``memory_view(bank.store.conn).as_dict()`` is what ``GET /_admin/memory``
    answers.
    """
    heap, note = sqlite_heap()
    rss = rss_bytes()
    return MemoryView(
        rss_mb=_mb(rss),
        sqlite_heap_mb=_mb(heap[0]) if heap else None,
        sqlite_heap_peak_mb=_mb(heap[1]) if heap else None,
        sqlite_heap_note=note,
        python_blocks=sys.getallocatedblocks(),
        gc_objects=len(gc.get_objects()) + gc.get_freeze_count(),
        sqlite_cache_cap_mb=_mb(cache_cap_bytes(conn)) if conn is not None else None,
    )


def rss_bytes() -> int | None:
    """The process's resident set size in bytes, or None where ``/proc`` is missing.

    Example: ``rss_bytes() > 0`` on Linux.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024  # the kernel reports kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def sqlite_heap() -> tuple[tuple[int, int] | None, str | None]:
    """``((in_use, high_water), None)`` in bytes from the live SQLite, or ``(None, why)``.

    Example: ``sqlite_heap()[0][0] >= 0`` where the library is reachable.
    """
    used, peak, note = _sqlite_counters()
    if used is None or peak is None:
        return None, note
    return (used(), peak(0)), None


def cache_cap_bytes(conn: sqlite3.Connection) -> int:
    """The page-cache cap of ``conn`` in bytes (``PRAGMA cache_size`` read back).

    Example: after ``PRAGMA cache_size=-2048``, ``cache_cap_bytes(conn) == 2 * 1024 * 1024``.
    """
    size = int(conn.execute("PRAGMA cache_size").fetchone()[0])
    if size < 0:
        return -size * 1024
    return size * int(conn.execute("PRAGMA page_size").fetchone()[0])


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / MIB, 2)


_Used = Callable[[], int]
_Peak = Callable[[int], int]


@functools.cache
def _sqlite_counters() -> tuple[_Used | None, _Peak | None, str | None]:
    lib, note = _live_sqlite_library()
    if lib is None:
        return None, None, note
    used = lib.sqlite3_memory_used
    used.restype, used.argtypes = ctypes.c_int64, []
    peak = lib.sqlite3_memory_highwater
    peak.restype, peak.argtypes = ctypes.c_int64, [ctypes.c_int]
    option = lib.sqlite3_compileoption_used
    option.restype, option.argtypes = ctypes.c_int, [ctypes.c_char_p]
    # Built without memory statistics, SQLite answers 0 for ever: say so rather than
    # report an empty heap.
    if option(b"DEFAULT_MEMSTATUS=0"):
        return None, None, "SQLite was built with SQLITE_DEFAULT_MEMSTATUS=0 (no memory statistics)"
    return used, peak, None


def _live_sqlite_library() -> tuple[ctypes.CDLL | None, str]:
    """The SQLite library already running in this process, never a fresh copy."""
    # ``import sqlite3`` above loaded ``_sqlite3`` and with it the library it links.
    candidates = _mapped_paths("libsqlite3")
    # A Python built with SQLite inside the module itself exports the API from there.
    module_file = getattr(sys.modules.get("_sqlite3"), "__file__", None)
    if module_file:
        candidates.append(module_file)
    found = ctypes.util.find_library("sqlite3")
    if found:
        candidates.append(found)
    noload = getattr(os, "RTLD_NOLOAD", None)
    if noload is None:
        return None, "this platform cannot open an already loaded library (no RTLD_NOLOAD)"
    for path in candidates:
        try:
            # RTLD_NOLOAD: only a library already in the process; a second copy would
            # have counters of its own, all zero.
            lib = ctypes.CDLL(path, mode=os.RTLD_NOW | noload)
            lib.sqlite3_memory_used  # noqa: B018 - raises AttributeError when absent
        except (OSError, AttributeError):
            continue
        return lib, ""
    tried = ", ".join(candidates) or "none"
    return None, (f"no loaded library exports sqlite3_memory_used (tried: {tried}); "
                  "the sqlite3 module may link SQLite statically without exporting it")


def _mapped_paths(fragment: str) -> list[str]:
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    paths: list[str] = []
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and fragment in Path(parts[5]).name and parts[5] not in paths:
            paths.append(parts[5])
    return paths
