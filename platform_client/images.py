"""ID-card images as the platform sends them: real PNG files, built with the standard library.

The bank checks an image by its real signature (JPEG/PNG magic bytes) and a minimum size,
so the client sends genuine, decodable PNGs. :func:`id_card_png` draws a deterministic
noise image (incompressible, so it is well above the bank's minimum size) from a seed.

Example::

    >>> data = id_card_png("310101199003071230-front")
    >>> data[:8] == b"\\x89PNG\\r\\n\\x1a\\n", len(data) > 4096
    (True, True)
"""

from __future__ import annotations

import hashlib
import struct
import zlib


def _chunk(tag: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(tag + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", crc)


def id_card_png(seed: str, width: int = 96, height: int = 64) -> bytes:
    """A valid greyscale PNG whose pixels come from ``seed`` (same seed, same bytes)."""
    rows = bytearray()
    block = b""
    counter = 0
    for _ in range(height):
        rows.append(0)  # filter type "none" for the row
        while len(block) < width:
            block += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
            counter += 1
        rows += block[:width]
        block = block[width:]
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(bytes(rows), 9)) + _chunk(b"IEND", b""))
